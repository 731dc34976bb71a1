"""glibc keeps freed buffers for reuse after retain_freed_memory."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.memory import retain_freed_memory

REPO_ROOT = Path(__file__).resolve().parent.parent
ON_GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Each round keeps 40 buffers of 4 MB alive, as a cache of activations does,
# then frees them all. The probe prints the minor page faults of rounds 5 to 9.
FAULT_PROBE = """
import json, resource, sys
import torch
sys.path.insert(0, {root!r})
from helpers.memory import retain_freed_memory
if {retain}:
    retain_freed_memory()
for step in range(10):
    if step == 5:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    cache = [torch.ones(1024 * 1024) for _ in range(40)]
    del cache
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


def _minor_faults(retain: bool) -> int:
    # glibc starts with a 128 KB mmap threshold and raises it as large blocks
    # are freed, so how many pages the defaults fault in depends on the order
    # of earlier allocations. Fixing the starting value makes the baseline map
    # every 4 MB buffer afresh, and retain_freed_memory must override it.
    completed = subprocess.run(
        [sys.executable, "-c", FAULT_PROBE.format(root=str(REPO_ROOT), retain=retain)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)},
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("bad", [True, 1.5, "1GB", 1024, 2**31])
def test_retain_rejects_invalid_sizes(bad):
    with pytest.raises(ValueError, match="max_retained_bytes"):
        retain_freed_memory(bad)


@pytest.mark.skipif(not ON_GLIBC, reason="mallopt is glibc's")
def test_retain_applies_on_glibc():
    settings = retain_freed_memory()
    assert settings.applied
    assert settings.threshold_bytes == 2**30
    assert retain_freed_memory().reason == "already set"


@pytest.mark.skipif(not ON_GLIBC, reason="mallopt is glibc's")
def test_retained_buffers_fault_no_fresh_pages():
    default_faults = _minor_faults(retain=False)
    retained_faults = _minor_faults(retain=True)
    # 160 MB is 40 960 pages of 4 KB. Without the setting, every round maps
    # all of them afresh.
    assert default_faults > 5 * 30_000
    assert retained_faults < 200


TOWER_PROBE = """
import sys
sys.path.insert(0, {root!r})
from helpers import load_clip, memory
from helpers.hooked_vision import hooked_vision_tower
hooked_vision_tower(load_clip("shapes-clip"), tune_allocator={tune})
print(memory._applied)
"""


@pytest.mark.skipif(not ON_GLIBC, reason="mallopt is glibc's")
@pytest.mark.parametrize(("tune", "expected"), [(True, str(2**30)), (False, "None")])
def test_vision_tower_tunes_allocator(tune, expected):
    completed = subprocess.run(
        [sys.executable, "-c", TOWER_PROBE.format(root=str(REPO_ROOT), tune=tune)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert completed.stdout.strip().splitlines()[-1] == expected
