#!/usr/bin/env python3
"""Drives the fleet dashboard in headless Chromium (Debian's, through Playwright): logs in,
finds the halted rollout and its reason, presses Resume and checks that the page shows the
rollout active again. Screenshots of each step go to OUT_DIR.

Usage: dashboard.py BASE_URL OPERATOR RELEASE EXPECTED_REASON OUT_DIR  (password on stdin)

Exits 0 when every step passed; otherwise prints the failed step and exits 1. Called by
crates/limpet-fleet/tests/dashboard.rs.
"""
import os
import sys

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("LIMPET_CHROMIUM", "/usr/bin/chromium")


class StepFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise StepFailed(what)


def main():
    base, operator, release, reason, out = sys.argv[1:6]
    password = sys.stdin.read().rstrip("\n")
    os.makedirs(out, exist_ok=True)
    shot = lambda page, name: page.screenshot(path=os.path.join(out, name), full_page=True)
    with sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox refuses to run as root (CI runs as root).
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)

            # 1. Unauthenticated: the dashboard sends us to the login page.
            page.goto(base + "/")
            check(page.url == base + "/login", f"not sent to the login page: at {page.url}")
            shot(page, "1-login.png")

            # 2. Log in.
            page.fill("#name", operator)
            page.fill("#password", password)
            with page.expect_navigation():
                page.click("#login")
            check(page.url == base + "/", f"login did not land on the overview: at {page.url}")
            state = page.locator(f"[id='s:{release}']")
            check(state.count() == 1, f"no rollout of {release} on the overview")
            text = state.inner_text()
            check(text.startswith("halted: " + reason), f"overview shows {text!r}, not halted with the reason")
            check(state.get_attribute("class") == "halted", "the state is not styled as halted")
            shot(page, "2-overview-halted.png")

            # 3. The release's page: halted, the reason, the holds in force, a Resume button.
            with page.expect_navigation():
                page.click(f"a[href='/releases/{release}']")
            check(page.url == f"{base}/releases/{release}", f"not on the release page: at {page.url}")
            text = page.locator(f"[id='s:{release}']").inner_text()
            check(text.startswith("halted: " + reason), f"release page shows {text!r}")
            holds = page.locator("li").all_inner_texts()
            check(any(reason in h for h in holds), f"no hold with the reason in force: {holds}")
            resume = page.locator("button.resume")
            check(resume.count() == 1, "no Resume button on the halted release")
            shot(page, "3-release-halted.png")

            # 4. Resume: the form posts with the session's CSRF token and comes back here.
            with page.expect_navigation():
                resume.click()
            check(page.url == f"{base}/releases/{release}", f"resume did not return to the release: at {page.url}")
            state = page.locator(f"[id='s:{release}']")
            text = state.inner_text()
            check(text == "active", f"after resume the release page shows {text!r}")
            check(state.get_attribute("class") == "active", "the state is not styled as active")
            check(page.locator("button.resume").count() == 0, "Resume is still offered")
            check(page.locator("button.halt").count() == 1, "no Halt control after resume")
            check(page.locator("li").count() == 0, f"holds still in force: {page.locator('li').all_inner_texts()}")
            shot(page, "4-release-resumed.png")

            # 5. The overview agrees.
            page.goto(base + "/")
            text = page.locator(f"[id='s:{release}']").inner_text()
            check(text == "active", f"after resume the overview shows {text!r}")
            shot(page, "5-overview-resumed.png")
        except StepFailed as e:
            try:
                shot(page, "failed.png")
            except Exception:  # noqa: BLE001 - the screenshot is only a help
                pass
            print(f"dashboard step failed: {e}", file=sys.stderr)
            return 1
        finally:
            browser.close()
    print("dashboard: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
