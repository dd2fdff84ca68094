"""The App Platform spec (.do/app.yaml) and the deploy button's template, against DigitalOcean's app-spec
schema and against the Procfile.

The schema below is the part of DigitalOcean's that these files use, read from the OpenAPI description in
github.com/digitalocean/openapi (specification/resources/apps/models/, commit 7c1300c4, 2026): the property
names of each object (anything else is refused, as App Platform refuses unknown fields), the enums, the
name patterns, the ranges of health checks and the required fields.
"""

from __future__ import annotations

import pathlib

import jsonschema
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]

_NAME = {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,30}[a-z0-9]$"}


def _closed(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def _open_names(*names: str) -> dict:
    return {name: {} for name in names}


_INT32 = {"type": "integer"}
_HEALTH_CHECK = _closed({  # app_service_spec_health_check.yml
    "failure_threshold": _INT32, "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "http_path": {"type": "string"}, "initial_delay_seconds": _INT32, "period_seconds": _INT32,
    "success_threshold": _INT32, "timeout_seconds": _INT32})
_LIVENESS_CHECK = _closed({  # app_health_check_spec.yml
    "failure_threshold": {"type": "integer", "minimum": 1, "maximum": 50},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535}, "http_path": {"type": "string"},
    "initial_delay_seconds": {"type": "integer", "minimum": 0, "maximum": 3600},
    "period_seconds": {"type": "integer", "minimum": 1, "maximum": 300},
    "success_threshold": {"type": "integer", "minimum": 1, "maximum": 1},
    "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 120}})
_ENV = _closed({  # app_variable_definition.yml
    "key": {"type": "string", "pattern": "^[_A-Za-z][_A-Za-z0-9]*$"},
    "scope": {"enum": ["UNSET", "RUN_TIME", "BUILD_TIME", "RUN_AND_BUILD_TIME"]},
    "type": {"enum": ["GENERAL", "SECRET"]}, "value": {"type": "string"}}, ("key",))
_INSTANCE_SIZES = [  # app_component_instance_base.yml, the current (non-deprecated) slugs
    "apps-s-1vcpu-0.5gb", "apps-s-1vcpu-1gb-fixed", "apps-s-1vcpu-1gb", "apps-s-1vcpu-2gb", "apps-s-2vcpu-4gb",
    "apps-d-1vcpu-0.5gb", "apps-d-1vcpu-1gb", "apps-d-1vcpu-2gb", "apps-d-1vcpu-4gb", "apps-d-2vcpu-4gb",
    "apps-d-2vcpu-8gb", "apps-d-4vcpu-8gb", "apps-d-4vcpu-16gb", "apps-d-8vcpu-32gb"]
_SERVICE = _closed({  # app_component_base.yml + app_component_instance_base.yml + app_service_spec.yml
    "name": _NAME,
    "git": _closed({"branch": {"type": "string"}, "repo_clone_url": {"type": "string"}}),
    "github": _closed({"branch": {"type": "string"}, "deploy_on_push": {"type": "boolean"},
                       "repo": {"type": "string"}}),
    **_open_names("gitlab", "bitbucket", "image", "dockerfile_path", "build_command", "source_dir",
                  "log_destinations", "autoscaling", "cors", "protocol", "internal_ports", "routes", "termination"),
    "run_command": {"type": "string"}, "environment_slug": {"type": "string"},
    "envs": {"type": "array", "items": _ENV},
    "instance_count": {"type": "integer", "minimum": 1}, "instance_size_slug": {"enum": _INSTANCE_SIZES},
    "health_check": _HEALTH_CHECK, "liveness_health_check": _LIVENESS_CHECK,
    "http_port": {"type": "integer", "minimum": 1, "maximum": 65535},
}, ("name",))
_DATABASE = _closed({  # app_database_spec.yml
    "cluster_name": {"type": "string"}, "db_name": {"type": "string"}, "db_user": {"type": "string"},
    "engine": {"enum": ["UNSET", "MYSQL", "PG", "REDIS", "MONGODB", "KAFKA", "OPENSEARCH", "VALKEY"]},
    "name": _NAME, "production": {"type": "boolean"}, "version": {"type": "string"}}, ("name",))
APP_SPEC = _closed({  # app_spec.yml
    "name": _NAME,
    "region": {"enum": ["atl", "nyc", "sfo", "tor", "ams", "fra", "lon", "blr", "sgp", "syd"]},
    **_open_names("disable_edge_cache", "disable_email_obfuscation", "enhanced_threat_control_enabled", "domains",
                  "static_sites", "jobs", "workers", "functions", "ingress", "egress", "maintenance", "vpc"),
    "services": {"type": "array", "items": _SERVICE},
    "databases": {"type": "array", "items": _DATABASE},
}, ("name",))


def _spec(relative: str) -> dict:
    document = yaml.safe_load((ROOT / relative).read_text())
    return document["spec"] if relative.endswith("deploy.template.yaml") else document


@pytest.mark.parametrize("relative", [".do/app.yaml", ".do/deploy.template.yaml"])
def test_spec_matches_the_app_platform_schema(relative: str) -> None:
    jsonschema.validate(_spec(relative), APP_SPEC)


@pytest.mark.parametrize("relative", [".do/app.yaml", ".do/deploy.template.yaml"])
def test_spec_runs_the_service_as_the_procfile_does(relative: str) -> None:
    spec = _spec(relative)
    [service] = spec["services"]
    procfile = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert service["run_command"] == procfile["web"].strip()
    assert service["environment_slug"] == "python"
    # App Platform sets PORT to http_port; nothing may set PORT to something else.
    envs = {env["key"]: env for env in service["envs"]}
    assert "PORT" not in envs and service["http_port"] == 8080
    assert service["health_check"]["http_path"] == "/ready"
    assert service["liveness_health_check"]["http_path"] == "/health"
    assert service["health_check"]["initial_delay_seconds"] >= 5  # the preload takes about 1 s here
    [database] = spec["databases"]
    assert database["engine"] == "PG"
    assert envs["DATABASE_URL"]["value"] == "${" + database["name"] + ".DATABASE_URL}"
    assert envs["API_KEYS"]["type"] == "SECRET" and "value" not in envs["API_KEYS"]
    assert service["instance_size_slug"] == "apps-s-1vcpu-0.5gb"  # the smallest: 2 workers need under 256 MB


def test_template_is_the_app_spec_with_a_public_source() -> None:
    app, template = _spec(".do/app.yaml"), _spec(".do/deploy.template.yaml")
    [app_service], [template_service] = app["services"], template["services"]
    assert app_service.pop("github")["repo"].endswith("/faceapi")
    assert template_service.pop("git")["repo_clone_url"].endswith("/faceapi.git")
    assert template == app


def test_schema_check_can_fail() -> None:
    """The schema refuses what App Platform refuses: an unknown field, a bad enum, a missing name."""
    spec = _spec(".do/app.yaml")
    for broken in ({**spec, "servces": []}, {**spec, "region": "mars"},
                   {**spec, "services": [{**spec["services"][0], "instance_size_slug": "huge"}]},
                   {**spec, "databases": [{"engine": "PG"}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, APP_SPEC)
