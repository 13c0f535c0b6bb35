"""What the overlay installer asks a machine, run here as it runs there (its python3)."""

from __future__ import annotations

import json
import subprocess
import sys

from lab.targets.overlay import FACTS


def test_the_facts_of_a_machine_name_each_paths_nearest_directory():
    paths = ["/", "/etc/nsswitch.conf", "/nonexistent/a/b", "/etc"]
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", FACTS, json.dumps(paths)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    facts = json.loads(done.stdout)
    assert facts["parent"] == {"/": "/", "/etc/nsswitch.conf": "/etc", "/nonexistent/a/b": "/", "/etc": "/"}
    assert facts["dirs"] == ["/", "/etc"] and "/nonexistent/a/b" not in facts["exists"]
    assert facts["libdir"].endswith("-linux-gnu") and facts["nsswitch"].count("passwd:") >= 1
