"""Instrumenting a pipeline: sites, one `trace` (read, write, stop, replay), capture/edit on top of it,
and the vision encoder."""

from vhslab.trace.capture import Capture
from vhslab.trace.edit import Edit, PatchError, ablate_tokens, add_direction, region_mask, replace_tokens
from vhslab.trace.site import (
    KINDS,
    Site,
    SiteError,
    check_site,
    find_site,
    find_transformer,
    parse_sites,
    pipeline_sites,
    site_array,
    store_sites,
)
from vhslab.trace.trace import BRANCHES, EditFn, Trace, VisionFn, to_uint8, trace
from vhslab.trace.vision import VisionEncoder

__all__ = ["BRANCHES", "KINDS", "Capture", "Edit", "EditFn", "PatchError", "Site", "SiteError", "Trace", "VisionEncoder", "VisionFn",
           "ablate_tokens", "add_direction", "check_site", "find_site", "find_transformer", "parse_sites",
           "pipeline_sites", "region_mask", "replace_tokens", "site_array", "store_sites", "to_uint8", "trace"]
