import re

import pytest

from shared.model.errors import BadRequest
from shared.model.request import DEFAULT_PATTERNS, PipelineRequest


def test_minimal_request_gets_the_defaults():
    request = PipelineRequest.from_dict({"source": "az://c1c/x", "dataset_id": "era5"})
    assert request.concat_dim == "time"
    assert request.format == "kerchunk-json"
    assert request.patterns == DEFAULT_PATTERNS
    assert request.collection_id == "era5"


def test_request_round_trips_through_json():
    request = PipelineRequest.from_dict(
        {
            "source": "az://c1c/x",
            "dataset_id": "era5",
            "format": "icechunk",
            "options": {"patterns": ["*.nc"], "collection": "reanalysis", "batch_size": 50},
        }
    )
    assert PipelineRequest.from_dict(request.to_dict()) == request
    assert request.options == {"batch_size": 50}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object"),
        ({"dataset_id": "a"}, "'source' is missing"),
        ({"source": 3, "dataset_id": "a"}, "'source' must be a string, not int"),
        ({"source": "x", "dataset_id": ""}, "'dataset_id' is empty"),
        ({"source": "x", "dataset_id": "Bad Id"}, "'dataset_id' is 'Bad Id'"),
        ({"source": "x", "dataset_id": "a", "format": "zarr"}, "'format' is 'zarr'"),
        ({"source": "x", "dataset_id": "a", "concat_dim": "a b"}, "'concat_dim'"),
        ({"source": "x", "dataset_id": "a", "options": []}, "'options' must be an object"),
        ({"source": "x", "dataset_id": "a", "options": {"patterns": []}}, "'patterns'"),
        ({"source": "x", "dataset_id": "a", "options": {"colour": 1}}, "Unknown option"),
    ],
)
def test_bad_requests_name_the_field(body, message):
    with pytest.raises(BadRequest, match=message):
        PipelineRequest.from_dict(body)


@pytest.mark.parametrize("dataset_id", ["a", "era5", "tas-daily", "v1.2", "a_b", "0", "a" * 63])
def test_safe_dataset_ids_are_accepted(dataset_id):
    assert PipelineRequest.from_dict({"source": "x", "dataset_id": dataset_id}).dataset_id == (
        dataset_id
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"source": "x", "dataset_id": ".."}, "'dataset_id' is '..'"),
        ({"source": "x", "dataset_id": "a..b"}, "without '..'"),
        ({"source": "x", "dataset_id": "era5-"}, "ending with a letter or digit"),
        ({"source": "x", "dataset_id": "_era5"}, "starting and ending"),
        ({"source": "x", "dataset_id": "nul.x"}, "reserved device name"),
        ({"source": "x", "dataset_id": "a", "options": {"collection": 5}}, "not int"),
        ({"source": "x", "dataset_id": "a", "dataset": "b"}, "Unknown field"),
        ({"source": "x", "dataset_id": "a", "patterns": ["./*.nc"]}, "'.' or '..' segment"),
        ({"source": "x", "dataset_id": "a", "patterns": ["a\u200b.nc"]}, "U+200B"),
        ({"source": "x", "dataset_id": "a", "patterns": ["*.nc"] * 21}, "at most 20"),
    ],
)
def test_hostile_fields_are_refused_naming_the_field(body, message):
    with pytest.raises(BadRequest, match=re.escape(message)):
        PipelineRequest.from_dict(body)


def test_from_body_reads_the_bytes_of_an_http_request():
    request = PipelineRequest.from_body(b'{"source": "az://c1c/x", "dataset_id": "era5"}')
    assert request.dataset_id == "era5"
    with pytest.raises(BadRequest, match="not valid JSON"):
        PipelineRequest.from_body(b'{"source": ')
