"""Write, or check, the JSON schema that clinicians' editors use on red-flag rule files.

The schema is generated from :class:`~edge_server.safety.rule_file.RedFlagRuleFile` and
committed as ``edge_server/data/red_flags.schema.json``; the bundled rule file links to
it with ``"$schema"``, so an editor such as VS Code flags a wrong key, a missing
translation or a misplaced ``*`` while the rules are typed. After changing the model::

    python -m edge_server.safety.schema            # rewrite the committed schema
    python -m edge_server.safety.schema --check    # exit 1 if it is out of date
    python -m edge_server.safety.schema out.json   # write it elsewhere
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_server.safety.rule_file import rules_json_schema
from skinspector.core.resources import resource_path
from skinspector.core.storage import write_atomic

__all__ = ["committed_schema_path", "main", "schema_text", "write_rules_schema"]


def schema_text() -> str:
    """The schema as committed: indented JSON, non-ASCII kept, one final newline."""
    return json.dumps(rules_json_schema(), indent=2, ensure_ascii=False) + "\n"


def committed_schema_path() -> Path:
    """``edge_server/data/red_flags.schema.json``."""
    return resource_path("edge_server", "data", "red_flags.schema.json")


def write_rules_schema(path: Path | None = None) -> Path:
    """Write the schema to ``path`` (default: the committed file) and return the path."""
    target = committed_schema_path() if path is None else path
    write_atomic(target, schema_text().encode("utf-8"))
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_server.safety.schema",
        description="Write or check the JSON schema of red-flag rule files.",
    )
    parser.add_argument(
        "path", nargs="?", type=Path, help="where to write (default: the committed schema)"
    )
    parser.add_argument(
        "--check", action="store_true", help="only compare; exit 1 if the file differs"
    )
    args = parser.parse_args(argv)
    target: Path = args.path or committed_schema_path()
    if args.check:
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current != schema_text():
            print(f"{target} is out of date; run python -m edge_server.safety.schema")
            return 1
        print(f"{target} is up to date")
        return 0
    print(f"wrote {write_rules_schema(target)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
