"""deploykit.testing as a plugin author meets it: an inner pytest run that loads the plugin by entry point."""

from __future__ import annotations

USER_TESTS = '''
import pytest
import deploykit
from deploykit.errors import SmokeTestError
from deploykit.testing import two_fits
from deploykit_plugins.memory import MemoryTarget, Step


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return two_fits(tmp_path_factory.mktemp("models"))


def test_deploy_without_the_memory_fixture(project, models):
    assert (project.dir / "credentials.yaml").read_text() == "local:\\n  port: 0\\n"
    dep = deploykit.deploy(models.first, target="memory", name="m", metadata=project.metadata)
    assert dep.action == "created" and MemoryTarget.platform.names() == ["m"]
    MemoryTarget.fail_next("update")


def test_the_next_test_starts_empty(project, memory):
    assert memory.names() == [] and memory.pending_failures() == {}
    assert not project.metadata.exists()


def test_typed_failure(project, memory, models):
    deploykit.deploy(models.first, target="memory", name="m")
    memory.fail_next(Step.WAIT_READY, SmokeTestError)
    with pytest.raises(SmokeTestError, match="rolled back to revision 1"):
        deploykit.deploy(models.second, target="memory", name="m")
    assert memory.serving("m").sha256 == deploykit.status("m").model_sha256


def test_cli(cli):
    result = cli("targets", "--json")
    assert result.code == 0 and "memory" in {t["name"] for t in result.json()["targets"]}
'''


def test_the_plugin_loads_by_entry_point_and_isolates_tests(pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=4)


def test_the_plugin_can_be_turned_off(pytester) -> None:
    pytester.makepyfile(test_user="def test_uses_project(project):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:deploykit", "-q")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'project' not found*"])
