"""chest.schema.yaml's `source:` of each dataset agrees with the registered datasets (the jsrt_download bad input
of bad_inputs.py shows its message)."""

import yaml

from conftest import REPO


def test_the_schema_allows_download_exactly_for_the_datasets_that_can_be_downloaded():
    """The JSRT refusal in chest.schema.yaml agrees with the registered descriptions, and its hint with their URLs."""
    from medrepro.data import sourcing
    from medrepro.studies.chest.datasets import DATASET_SOURCES

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "chest.schema.yaml").read_text())
    general = schema["definitions"]["dataset"]["properties"]["source"]["enum"]
    for name, entry in schema["properties"]["datasets"]["properties"].items():
        narrowed = [part["properties"]["source"] for part in entry.get("allOf", [])
                    if "source" in part.get("properties", {})]
        allowed = narrowed[0]["enum"] if narrowed else general
        assert ("download" in allowed) == (sourcing.dataset(name).download is not None), name
        if narrowed:
            for source in DATASET_SOURCES[name]:
                assert all(url in narrowed[0]["description"] for url in source.urls), (name, source.what)
