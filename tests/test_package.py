import durable_futures


def test_compiled_core_matches_package_version() -> None:
    from importlib.metadata import version

    assert durable_futures.__version__ == version("durable-futures")
    assert durable_futures.PROTOCOL_VERSIONS == (5, 7)
