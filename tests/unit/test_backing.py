"""A project's managed services: declarations, the variables a workload gets, and what it brings itself."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from envhub.domain.backing import (
    Connection,
    brought_by_workloads,
    check_variable_clash,
    parse_backing,
    variables_for,
)
from envhub.domain.specs import parse_spec
from envhub.errors import ValidationFailed
from envhub.integrations.backing.base import (
    instance_name,
    is_envhub_name,
    parse_instance_name,
    parse_scratch_name,
    scratch_name,
)


def test_a_list_or_a_mapping_declares_services() -> None:
    settings = parse_backing(
        [{"name": "db", "kind": "postgres", "version": "16"}, {"name": "cache", "kind": "redis"}]
    )
    assert settings.names() == ("db", "cache")
    assert parse_backing({"services": [{"name": "files", "kind": "bucket"}]}).names() == ("files",)
    assert parse_backing(None).services == ()


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ([{"name": "DB", "kind": "postgres"}], "lower-case"),
        ([{"name": "db", "kind": "mysql"}], "one of postgres, redis, bucket"),
        ([{"name": "db", "kind": "postgres", "version": "9"}], "one of 14, 15, 16, 17"),
        ([{"name": "c", "kind": "redis", "version": "7"}], "a redis service has no version"),
        ([{"name": "db", "kind": "postgres", "size": "lots"}], "512Mi or 10Gi"),
        ([{"name": "db", "kind": "postgres"}, {"name": "db", "kind": "redis"}], "unique"),
        (
            [{"name": "a", "kind": "postgres"}, {"name": "b", "kind": "postgres"}],
            "would both set DATABASE_URL",
        ),
        ([{"name": "db", "kind": "postgres", "rename": {"REDIS_URL": "X"}}], "not a variable of postgres"),
        ([{"name": "db", "kind": "postgres", "prefix": "lower_"}], "upper-case"),
        ([{"name": "db", "kind": "postgres", "shards": 3}], "Extra inputs"),
        (
            [{"name": "c", "kind": "redis", "backup_keep_days": 3}],
            "backup_keep_days applies to postgres only",
        ),
        ([{"name": "db", "kind": "postgres", "backup_every_hours": 0}], "greater than or equal to 1"),
        ([{"name": "db", "kind": "postgres", "seed_from": "Staging!"}], "seed_from must name an environment"),
    ],
)
def test_bad_declarations_are_refused_saying_why(raw: list[dict[str, object]], says: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_backing(raw)
    assert says in caught.value.message


def test_two_databases_coexist_with_a_prefix() -> None:
    settings = parse_backing(
        [{"name": "db", "kind": "postgres"}, {"name": "stats", "kind": "postgres", "prefix": "STATS_"}]
    )
    assert settings.services[1].variable_names()["DATABASE_URL"] == "STATS_DATABASE_URL"


def test_a_variable_the_project_sets_itself_is_a_clash() -> None:
    settings = parse_backing([{"name": "cache", "kind": "redis"}])
    with pytest.raises(ValidationFailed, match="REDIS_URL"):
        check_variable_clash(settings, {"REDIS_URL", "OTHER"})
    check_variable_clash(settings, {"OTHER"})


def test_postgres_variables_quote_the_password_in_the_url_and_follow_renames() -> None:
    (db,) = parse_backing([{"name": "db", "kind": "postgres", "rename": {"DATABASE_URL": "DB_DSN"}}]).services
    password = "p@ss:w/rd?#"
    values = variables_for(
        db, Connection("postgres", "127.0.0.1", 5432, "envhub_e3_db", password, database="envhub_e3_db")
    )
    assert "DATABASE_URL" not in values
    url = urlsplit(values["DB_DSN"])
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", 5432, "/envhub_e3_db")
    assert url.password is not None
    assert password not in values["DB_DSN"]
    assert (values["PGPASSWORD"], values["PGUSER"]) == (password, "envhub_e3_db")


def test_redis_and_bucket_variables() -> None:
    cache, files = parse_backing(
        [{"name": "cache", "kind": "redis"}, {"name": "files", "kind": "bucket"}]
    ).services
    assert variables_for(cache, Connection("redis", "127.0.0.1", 6379, "default", "pw")) == {
        "REDIS_URL": "redis://default:pw@127.0.0.1:6379/0"
    }
    values = variables_for(
        files,
        Connection(
            "bucket", "s3.example", 443, "AKIA1", "secret", database="team-e3-files", region="eu-west-1"
        ),
    )
    assert values == {
        "S3_ENDPOINT": "http://s3.example:443",
        "S3_BUCKET": "team-e3-files",
        "AWS_ACCESS_KEY_ID": "AKIA1",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "eu-west-1",
    }


def test_a_connection_never_prints_its_password() -> None:
    assert "hunter2" not in repr(Connection("redis", "h", 1, "u", "hunter2"))


def test_services_the_environment_brings_itself_are_found_with_why() -> None:
    spec = parse_spec(
        {
            "env": {"REDIS_URL": "redis://elsewhere:6379"},
            "services": [{"name": "db", "image": "docker.io/library/postgres:16"}],
        }
    )
    found = brought_by_workloads(spec=spec)
    assert found == {
        "postgres": "service db runs docker.io/library/postgres:16",
        "redis": "the environment sets REDIS_URL",
    }


def test_rendered_objects_reveal_cloudnativepg_redis_and_explicit_urls() -> None:
    objects = [
        {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "pg"}},
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "cache"},
            "spec": {"template": {"spec": {"containers": [{"name": "r", "image": "bitnami/redis:7.2"}]}}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "web", "image": "app:1", "env": [{"name": "S3_ENDPOINT", "value": "x"}]}
                        ]
                    }
                }
            },
        },
    ]
    found = brought_by_workloads(spec=parse_spec({}), objects=objects)
    assert found["postgres"] == "Cluster pg is a CloudNativePG cluster"
    assert found["redis"] == "StatefulSet cache runs bitnami/redis:7.2"
    assert found["bucket"] == "Deployment web sets S3_ENDPOINT"


def test_an_image_that_only_contains_a_service_name_is_not_that_service() -> None:
    spec = parse_spec({"services": [{"name": "app", "image": "ghcr.io/acme/postgres-exporter:1"}]})
    assert brought_by_workloads(spec=spec) == {}


def test_instance_names_round_trip_and_refuse_what_envhub_did_not_make() -> None:
    assert instance_name(12, "db") == "envhub_e12_db"
    assert parse_instance_name("envhub_e12_db") == (12, "db")
    for other in ("postgres", "envhub_e0_db", "envhub_e12_DB", "envhub_e12_", "x_envhub_e1_db"):
        assert parse_instance_name(other) is None
    with pytest.raises(ValueError):
        instance_name(0, "db")


def test_backup_options_default_to_daily_kept_a_week() -> None:
    [db] = parse_backing([{"name": "db", "kind": "postgres"}]).services
    assert (db.backup_every_hours, db.backup_keep_days, db.seed_from) == (24, 7, "")
    [copied] = parse_backing([{"name": "db", "kind": "postgres", "seed_from": "staging"}]).services
    assert copied.seed_from == "staging"


def test_scratch_names_are_envhubs_but_not_instances() -> None:
    name = scratch_name(12, "db")
    assert name == "envhub_r12_db"
    assert parse_scratch_name(name) == (12, "db")
    assert parse_instance_name(name) is None
    assert is_envhub_name(name)
    assert is_envhub_name(instance_name(3, "db"))
    assert not is_envhub_name("postgres")
    assert not is_envhub_name("envhub_r0_db")
