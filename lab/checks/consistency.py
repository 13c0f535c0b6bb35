from __future__ import annotations

from lab.checks.base import CheckResult, Context, check, differences, summary


@check("consistency")
def consistency(ctx: Context) -> CheckResult:
    """Every entry get*ent_r lists must equal what getpwnam_r/getpwuid_r (getgrnam_r,
    getgrgid_r, getspnam_r) return for its name and its id, field by field.

    Catches modules that build the listing and the point lookups from different code or
    caches: `ls -l` (by id) and `getent passwd` (listing) disagree with `id` (by name),
    a file shows the wrong owner, bash completes a home directory that login never uses."""
    dbs = ctx.enumerable()
    if not dbs:
        return CheckResult("skip", "no database with set/get/end*ent entry points to compare")
    value, bad = ctx.direct("consistency", "listing against point lookups", databases=dbs, limit=100_000)
    if bad:
        return bad
    problems = []
    for db in dbs:
        for mismatch in value[db]["mismatches"]:
            listed = mismatch["enumerated"]
            if mismatch["status"] != "SUCCESS":
                problems.append(
                    f"{mismatch['query']} returned {mismatch['status']} for listed entry {listed['name']!r}"
                )
            else:
                problems.append(
                    f"{mismatch['query']} gives {differences(mismatch['value'], listed, 'listed')}"
                )
    details = {"compared": value}
    if problems:
        # A shadow listing that differs from getspnam_r reaches no caller: pam_unix, su and
        # sshd ask by name (nss-systemd lists "!*" for every hash on purpose).
        only_shadow = all(m["query"].startswith("getspnam_r") for db in dbs for m in value[db]["mismatches"])
        if only_shadow:
            return CheckResult(
                "warn",
                summary(problems),
                details,
                impact="no real caller: pam_unix, su and sshd read shadow by name (getspnam), "
                "not from the listing",
                reproduce=f"getent -s {ctx.module.name} shadow; getent -s {ctx.module.name} shadow NAME",
            )
        return CheckResult(
            "fail",
            summary(problems),
            details,
            impact="`ls -l` (by id), `getent passwd` (listing) and `id` (by name) disagree",
            reproduce=f"getent -s {ctx.module.name} passwd; getent -s {ctx.module.name} passwd NAME",
        )
    counts = ", ".join(
        f"{value[db]['entries']} {db}"
        + (
            f" ({value[db]['compared']} compared, spread over the listing)"
            if value[db]["compared"] < value[db]["entries"]
            else ""
        )
        for db in dbs
    )
    roomy = sum(value[db].get("buffer_only", 0) for db in dbs)
    note = f"; {roomy} lookup(s) answered only with a roomy buffer (erange's finding)" if roomy else ""
    if not any(value[db]["entries"] for db in dbs):
        return CheckResult("skip", "the listings are empty: no entry to compare with its lookups", details)
    return CheckResult("pass", f"{counts} entries: listing equals lookup by name and by id{note}", details)
