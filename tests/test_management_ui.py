"""The management web UI in a real browser: headless Chromium driven by selenium.

The main test logs in, finds a queue and its message count on the Queues page, declares a
queue, publishes a message from the Exchanges page, peeks at it and gets it from the Queues
page, and closes a pika connection from the Connections page (pika sees the close). Others
bind, purge and delete from the exchange and queue pages, see a new consumer at the next
refresh, work the Admin forms (topic permissions too) and import definitions files chosen in
the file input (sent as RabbitMQ's page sends them, multipart with the part `file`), check that a
missing tag is reported without logging out and that what the broker sends is shown as text,
never as markup, and (without a browser) how the files are served. Screenshots go to a
temporary directory, or to the directory TRIMQ_UI_SCREENSHOTS names (the README's pictures
come from `TRIMQ_UI_SCREENSHOTS=docs/images`).

trimq-only: RabbitMQ serves its own UI. The browser tests skip, saying so, where Debian's
chromium and chromium-driver are not installed (CI installs them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pika.exceptions
import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WAIT = 15.0

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: RabbitMQ serves its own UI"
)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: TRIMQ_UI_SCREENSHOTS, else the test's temporary directory."""
    target = os.environ.get("TRIMQ_UI_SCREENSHOTS")
    path = Path(target) if target else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def driver() -> Iterator[WebDriver]:
    if CHROMIUM is None or not CHROMEDRIVER.exists():
        pytest.skip(
            "needs Debian's chromium and chromium-driver (apt-get install chromium "
            "chromium-driver; .ci/run installs them)"
        )
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    if CHROMIUM is not None:
        options.binary_location = CHROMIUM
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browser.set_page_load_timeout(WAIT)
    yield browser
    browser.quit()


def wait(browser: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException])


def shown(browser: WebDriver, css: str) -> WebElement:
    return wait(browser).until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)))


def text_in(browser: WebDriver, css: str, text: str) -> None:
    wait(browser).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))


def fill(browser: WebDriver, element_id: str, value: str) -> None:
    field = shown(browser, "#" + element_id)
    field.clear()
    field.send_keys(value)


def until(browser: WebDriver, check: Callable[[WebDriver], Any]) -> Any:
    return wait(browser).until(check)


def click(browser: WebDriver, by: str, value: str) -> None:
    """Click the element found, finding it again if a list refresh replaced it meanwhile."""

    def clicked(b: WebDriver) -> bool:
        b.find_element(by, value).click()
        return True

    until(browser, clicked)


def log_in(browser: WebDriver, base: str, user: str = "guest", password: str = "guest") -> None:
    browser.get(base + "/")
    fill(browser, "login-username", user)
    fill(browser, "login-password", password)
    browser.find_element(By.ID, "login-submit").click()


def go(browser: WebDriver, link: str) -> None:
    """Follow a navigation link by its name, as a user would."""
    wait(browser).until(ec.element_to_be_clickable((By.LINK_TEXT, link))).click()


def shows_count(browser: WebDriver, queue: str, count: str) -> None:
    """Filter the Queues page on `queue`, then wait until its row shows `count` messages."""
    fill(browser, "queues-filter", queue)
    cell = f'span.messages[data-queue="{queue}"]'
    until(browser, lambda b: [e.text for e in b.find_elements(By.CSS_SELECTOR, cell)] == [count])


def test_ui_files_are_served_with_their_headers(management_url: str) -> None:
    base = management_url.rstrip("/")
    page = requests.get(base + "/", timeout=WAIT)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in page.headers
    assets = re.findall(r'(?:src|href)="(static/[^"]+)"', page.text)
    assert sorted(assets) == ["static/app.js", "static/style.css"]
    for asset, media_type in zip(sorted(assets), ("text/javascript", "text/css"), strict=True):
        answer = requests.get(f"{base}/{asset}", timeout=WAIT)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith(media_type)
    script = requests.get(base + "/static/app.js", timeout=WAIT).text
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script  # the page is built with textContent only
    assert "document.cookie" not in script
    missing = requests.get(base + "/static/nothing.js", timeout=WAIT)
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "Object Not Found", "reason": "Not Found"},
    )
    # the API keeps its own answers beside the UI: no credentials, no data
    assert requests.get(base + "/api/overview", timeout=WAIT).status_code == 401


def test_ui_drives_the_broker(
    driver: WebDriver, management_url: str, broker: Any, shots: Path, unique: str
) -> None:
    base = management_url.rstrip("/")
    queue = "ui-" + unique
    declared = "ui-declared-" + unique
    conn_name = "ui-test-" + unique
    setup = broker.connect()
    channel = setup.channel()
    channel.queue_declare(queue)
    for i in range(3):
        channel.basic_publish("", queue, f"m{i}".encode())
    victim = broker.connect(client_properties={"connection_name": conn_name})

    log_in(driver, base)
    shown(driver, "#nav")
    for name in ("Overview", "Connections", "Channels", "Exchanges", "Queues", "Admin"):
        assert driver.find_element(By.LINK_TEXT, name).is_displayed()
    shown(driver, "#nodes-table")
    text_in(driver, "#listeners-table", "amqp")
    # totals, the message-rate chart, memory, disk and alarms of the node
    text_in(driver, "#overview-totals", "Queues")
    assert shown(driver, "#rate-chart").size["height"] > 0
    cells = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#nodes-table tbody td")]
    assert re.fullmatch(r"[\d.]+ \w*B of [\d.]+ \w*B", cells[1]), cells  # memory
    assert cells[2].startswith(tuple("0123456789")) and "(limit " in cells[2], cells  # disk
    assert cells[4] == "none", cells  # no alarm
    driver.save_screenshot(str(shots / "ui-overview.png"))

    # Queues: the queue with its message count; then declare one.
    go(driver, "Queues")
    shows_count(driver, queue, "3")
    driver.save_screenshot(str(shots / "ui-queues.png"))
    fill(driver, "queue-declare-name", declared)
    Select(driver.find_element(By.ID, "queue-declare-durable")).select_by_value("false")
    driver.find_element(By.ID, "queue-declare-submit").click()
    text_in(driver, "#flash", f"Queue {declared} declared.")
    shows_count(driver, declared, "0")
    channel.queue_declare(declared, passive=True)

    # Exchanges: publish to the new queue through the default exchange.
    go(driver, "Exchanges")
    click(driver, By.LINK_TEXT, "(AMQP default)")
    fill(driver, "publish-routing-key", declared)
    fill(driver, "publish-payload", "hello from the UI")
    fill(driver, "publish-properties", json.dumps({"message_id": "id-" + unique}))
    driver.find_element(By.ID, "publish-submit").click()
    text_in(driver, "#flash", "Message published.")
    driver.save_screenshot(str(shots / "ui-publish.png"))
    assert channel.queue_declare(declared, passive=True).method.message_count == 1

    # Queues: peek leaves the message where it is; get (automatic ack) takes it.
    go(driver, "Queues")
    shows_count(driver, declared, "1")
    fill(driver, "find-id", "id-" + unique)
    driver.find_element(By.ID, "find-submit").click()
    text_in(driver, "#find-output", declared)
    click(driver, By.LINK_TEXT, declared)
    text_in(driver, "#queue-messages", "1")
    driver.find_element(By.ID, "peek-submit").click()
    text_in(driver, "#peek-output", "hello from the UI")
    assert channel.queue_declare(declared, passive=True).method.message_count == 1
    Select(driver.find_element(By.ID, "get-ackmode")).select_by_value("ack_requeue_false")
    driver.find_element(By.ID, "get-submit").click()
    text_in(driver, "#get-output", "hello from the UI")
    driver.save_screenshot(str(shots / "ui-queue.png"))
    assert channel.queue_declare(declared, passive=True).method.message_count == 0

    # Connections: close the pika connection opened above; pika hears 320.
    go(driver, "Connections")
    fill(driver, "connections-filter", "")
    row = f'//tr[td[contains(., "{conn_name}")]]//button[contains(@class, "close-connection")]'
    until(driver, ec.presence_of_element_located((By.XPATH, row)))
    driver.save_screenshot(str(shots / "ui-connections.png"))
    click(driver, By.XPATH, row)
    until(driver, ec.alert_is_present()).accept()
    text_in(driver, "#flash", "closed.")
    deadline = time.monotonic() + WAIT
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        while time.monotonic() < deadline:
            victim.process_data_events(time_limit=0.2)
    assert closed.value.reply_code == 320
    assert "Closed via management UI" in closed.value.reply_text

    channel.queue_delete(queue)
    channel.queue_delete(declared)
    setup.close()


def test_login_refused_and_values_shown_as_text(
    driver: WebDriver, management_url: str, broker: Any, unique: str
) -> None:
    base = management_url.rstrip("/")
    log_in(driver, base, password="not-the-password")
    text_in(driver, "#login-error", "Login failed")
    assert not driver.find_element(By.ID, "nav").is_displayed()

    markup = f"<img src=x onerror=window.pwned=1>{unique}"
    setup = broker.connect()
    channel = setup.channel()
    channel.queue_declare(markup)
    try:
        log_in(driver, base)
        go(driver, "Queues")
        shows_count(driver, markup, "0")
        assert until(driver, lambda b: b.find_element(By.LINK_TEXT, markup).text) == markup
        assert not driver.find_elements(By.CSS_SELECTOR, "#queues-table img")
        assert driver.execute_script("return window.pwned === undefined")
    finally:
        channel.queue_delete(markup)
        setup.close()


def api_get(base: str, path: str) -> Any:
    response = requests.get(base + "/api" + path, auth=("guest", "guest"), timeout=WAIT)
    return response.json() if response.status_code == 200 else None


def unfold(browser: WebDriver, form_id: str) -> WebElement:
    """The form, its <details> opened if it was folded."""
    form = browser.find_element(By.ID, form_id)
    folded = form.find_elements(By.XPATH, "ancestor::details[not(@open)]/summary")
    if folded:
        folded[0].click()
    return form


def submit(browser: WebDriver, form_id: str, fields: dict[str, str]) -> None:
    """Fill the form (unfolded) and submit it."""
    form = unfold(browser, form_id)
    for element_id, value in fields.items():
        fill(browser, element_id, value)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def queue_definition(name: str, vhost: str | None = None) -> dict[str, Any]:
    queue: dict[str, Any] = {"name": name, "durable": True, "auto_delete": False, "arguments": {}}
    if vhost is not None:
        queue["vhost"] = vhost
    return queue


def test_admin_pages(
    driver: WebDriver, management_url: str, broker: Any, shots: Path, unique: str, tmp_path: Path
) -> None:
    base = management_url.rstrip("/")
    vhost, user, policy = "ui-vhost-" + unique, "ui-user-" + unique, "ui-policy-" + unique
    log_in(driver, base)
    go(driver, "Admin")
    shown(driver, "#users-table")

    submit(driver, "vhost-form", {"vhost-name": vhost, "vhost-description": "from the UI"})
    text_in(driver, "#flash", f"Virtual host {vhost} saved.")
    text_in(driver, "#vhosts-table", vhost)
    submit(
        driver,
        "user-form",
        {"user-name": user, "user-password": "s3cret", "user-tags": "monitoring"},
    )
    text_in(driver, "#flash", f"User {user} saved.")
    assert api_get(base, f"/users/{user}")["tags"] in (["monitoring"], "monitoring")
    vhost_option = f'#perm-vhost option[value="{vhost}"]'
    until(driver, ec.presence_of_element_located((By.CSS_SELECTOR, vhost_option)))
    unfold(driver, "perm-form")
    Select(driver.find_element(By.ID, "perm-vhost")).select_by_value(vhost)
    submit(driver, "perm-form", {"perm-user": user, "perm-write": "^ui-"})
    text_in(driver, "#flash", "Permissions set.")
    permission = api_get(base, f"/permissions/{quote(vhost, safe='')}/{user}")
    assert (permission["configure"], permission["write"], permission["read"]) == (
        ".*",
        "^ui-",
        ".*",
    )
    topic = f'#topic-perm-vhost option[value="{vhost}"]'
    until(driver, ec.presence_of_element_located((By.CSS_SELECTOR, topic)))
    unfold(driver, "topic-perm-form")
    Select(driver.find_element(By.ID, "topic-perm-vhost")).select_by_value(vhost)
    submit(driver, "topic-perm-form", {"topic-perm-user": user, "topic-perm-write": "^ui\\."})
    text_in(driver, "#flash", "Topic permissions set.")
    text_in(driver, "#topic-permissions-table", user)
    assert api_get(base, f"/topic-permissions/{quote(vhost, safe='')}/{user}") == [
        {"user": user, "vhost": vhost, "exchange": "amq.topic", "write": "^ui\\.", "read": ".*"}
    ]
    row = f'//table[@id="topic-permissions-table"]//tr[td[1][.="{user}"]]//button'
    click(driver, By.XPATH, row)
    until(driver, ec.alert_is_present()).accept()
    until(
        driver,
        lambda b: api_get(base, f"/topic-permissions/{quote(vhost, safe='')}/{user}") is None,
    )
    unfold(driver, "policy-form")
    Select(driver.find_element(By.ID, "policy-vhost")).select_by_value(vhost)
    submit(
        driver,
        "policy-form",
        {"policy-name": policy, "policy-pattern": "^ui-", "policy-definition": '{"max-length": 5}'},
    )
    text_in(driver, "#flash", f"Policy {policy} saved.")
    assert api_get(base, f"/policies/{quote(vhost, safe='')}/{policy}")["definition"] == {
        "max-length": 5
    }
    text_in(driver, "#policies-table", policy)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(shots / "ui-admin.png"))

    # Definitions: export makes a download link; import creates what the file defines.
    driver.find_element(By.ID, "definitions-export").click()
    text_in(driver, "#flash", "Definitions exported.")
    href = shown(driver, "#definitions-download").get_attribute("href")
    assert href is not None
    assert href.startswith("blob:")
    # Import: a whole broker's file (a vhost, a user, a queue in that vhost) chosen in the
    # file input and sent as RabbitMQ's page sends it (multipart, part `file`); then a
    # per-vhost file into the vhost chosen beside it.
    queue, new_vhost, new_user = "ui-imported-" + unique, "ui-imp-vh-" + unique, "ui-imp-" + unique
    whole = tmp_path / "definitions.json"
    whole.write_text(
        json.dumps(
            {
                "vhosts": [{"name": new_vhost}],
                "users": [{"name": new_user, "password_hash": "", "tags": "management"}],
                "queues": [queue_definition(queue, new_vhost)],
            }
        )
    )
    per_vhost = tmp_path / "vhost-definitions.json"
    per_vhost.write_text(json.dumps({"queues": [queue_definition(queue)]}))
    try:
        unfold(driver, "definitions-import")
        assert driver.find_element(By.ID, "definitions-file").get_attribute("name") == "file"
        driver.find_element(By.ID, "definitions-file").send_keys(str(whole))
        driver.find_element(By.ID, "definitions-import-submit").click()
        text_in(driver, "#flash", "Definitions imported.")
        text_in(driver, "#users-table", new_user)
        text_in(driver, "#vhosts-table", new_vhost)
        driver.execute_script("document.getElementById('admin-definitions').scrollIntoView()")
        driver.save_screenshot(str(shots / "ui-admin-definitions.png"))
        assert api_get(base, f"/queues/{quote(new_vhost, safe='')}/{queue}")["name"] == queue
        target = f'#definitions-vhost option[value="{vhost}"]'
        until(driver, ec.presence_of_element_located((By.CSS_SELECTOR, target)))
        Select(driver.find_element(By.ID, "definitions-vhost")).select_by_value(vhost)
        driver.find_element(By.ID, "definitions-file").send_keys(str(per_vhost))
        driver.find_element(By.ID, "definitions-import-submit").click()
        until(driver, lambda b: api_get(base, f"/queues/{quote(vhost, safe='')}/{queue}"))
        # a file that is not JSON: RabbitMQ's answer, shown in the flash bar
        per_vhost.write_text("not json")
        driver.find_element(By.ID, "definitions-file").send_keys(str(per_vhost))
        driver.find_element(By.ID, "definitions-import-submit").click()
        text_in(driver, "#flash", "400 failed_to_parse_json")
        go(driver, "Queues")
        fill(driver, "queues-filter", queue)
        rows = f'//table[@id="queues-table"]//tr[td[2][.="{queue}"]]/td[1]'
        until(
            driver,
            lambda b: (
                sorted(e.text for e in b.find_elements(By.XPATH, rows))
                == sorted([new_vhost, vhost])
            ),
        )
    finally:
        admin = requests.Session()
        admin.auth = ("guest", "guest")
        admin.delete(f"{base}/api/vhosts/{new_vhost}", timeout=WAIT)
        admin.delete(f"{base}/api/users/{new_user}", timeout=WAIT)
    go(driver, "Admin")
    shown(driver, "#vhosts-table")

    # Deleting the vhost from its row (after the browser's confirmation) removes it all.
    row = f'//table[@id="vhosts-table"]//tr[td[1][.="{vhost}"]]//button'
    click(driver, By.XPATH, row)
    until(driver, ec.alert_is_present()).accept()
    until(driver, lambda b: api_get(base, f"/vhosts/{quote(vhost, safe='')}") is None)
    row = f'//table[@id="users-table"]//tr[td[1][.="{user}"]]//button'
    click(driver, By.XPATH, row)
    until(driver, ec.alert_is_present()).accept()
    until(driver, lambda b: api_get(base, f"/users/{user}") is None)


def test_a_missing_tag_is_shown_without_logging_out(
    driver: WebDriver, management_url: str, unique: str
) -> None:
    base = management_url.rstrip("/")
    user = "ui-monitor-" + unique
    admin = requests.Session()
    admin.auth = ("guest", "guest")
    created = admin.put(
        f"{base}/api/users/{user}", json={"password": "pw", "tags": "monitoring"}, timeout=WAIT
    )
    assert created.status_code == 201
    try:
        log_in(driver, base, user, "pw")
        text_in(driver, "#who-name", user)
        go(driver, "Admin")
        text_in(driver, "#users", "Not administrator user")
        assert driver.find_element(By.ID, "nav").is_displayed()
        go(driver, "Queues")
        shown(driver, "#queues-table")
    finally:
        admin.delete(f"{base}/api/users/{user}", timeout=WAIT)


def test_exchange_bindings_purge_and_delete(
    driver: WebDriver, management_url: str, broker: Any, unique: str
) -> None:
    base = management_url.rstrip("/")
    exchange, queue = "ui-x-" + unique, "ui-bound-" + unique
    setup = broker.connect()
    channel = setup.channel()
    channel.queue_declare(queue)
    log_in(driver, base)

    # Declare a topic exchange from the Exchanges page, then bind the queue from its page.
    go(driver, "Exchanges")
    fill(driver, "exchange-declare-name", exchange)
    Select(driver.find_element(By.ID, "exchange-declare-type")).select_by_value("topic")
    driver.find_element(By.ID, "exchange-declare-submit").click()
    text_in(driver, "#flash", f"Exchange {exchange} declared.")
    fill(driver, "exchanges-filter", exchange)
    click(driver, By.LINK_TEXT, exchange)
    submit(
        driver, "exchange-bind", {"exchange-bind-other": queue, "exchange-bind-routing-key": "a.*"}
    )
    text_in(driver, "#flash", "Binding added.")
    text_in(driver, "#exchange-bindings-source", "a.*")
    channel.basic_publish(exchange, "a.b", b"routed")
    channel.basic_publish(exchange, "b.a", b"dropped")
    assert channel.queue_declare(queue, passive=True).method.message_count == 1

    # The queue's page lists the binding; purge empties it, unbind removes the binding.
    driver.get(f"{base}/#/queues/%2F/{quote(queue, safe='')}")
    text_in(driver, "#queue-bindings", exchange)
    text_in(driver, "#queue-messages", "1")
    driver.find_element(By.ID, "queue-purge").click()
    until(driver, ec.alert_is_present()).accept()
    text_in(driver, "#flash", f"Queue {queue} purged.")
    assert channel.queue_declare(queue, passive=True).method.message_count == 0
    click(
        driver, By.XPATH, f'//div[@id="queue-bindings"]//tr[td[contains(., "{exchange}")]]//button'
    )
    text_in(driver, "#flash", "Binding removed.")
    channel.basic_publish(exchange, "a.b", b"no longer routed")
    assert channel.queue_declare(queue, passive=True).method.message_count == 0

    # A consumer that starts while the page is open appears at the page's next refresh.
    consuming = broker.connect()
    consumer = consuming.channel()
    consumer.basic_qos(prefetch_count=7)
    tag = consumer.basic_consume(queue, lambda *_: None, consumer_tag="ui-tag-" + unique)
    text_in(driver, "#queue-consumers", tag)
    consumer_row = [
        c.text
        for c in driver.find_elements(
            By.XPATH, f'//div[@id="queue-consumers"]//tr[td[2][.="{tag}"]]/td'
        )
    ]
    assert consumer_row[2:5] == ["true", "false", "7"], consumer_row
    consuming.close()

    # Delete the queue, then the exchange, each from its own page.
    driver.find_element(By.ID, "queue-delete").click()
    until(driver, ec.alert_is_present()).accept()
    text_in(driver, "#flash", f"Queue {queue} deleted.")
    until(driver, ec.url_contains("#/queues"))
    driver.get(f"{base}/#/exchanges/%2F/{quote(exchange, safe='')}")
    shown(driver, "#exchange-delete").click()
    until(driver, ec.alert_is_present()).accept()
    text_in(driver, "#flash", f"Exchange {exchange} deleted.")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
        channel.queue_declare(queue, passive=True)
    assert gone.value.reply_code == 404
    channel = setup.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
        channel.exchange_declare(exchange, "topic", passive=True)
    assert gone.value.reply_code == 404
    setup.close()
