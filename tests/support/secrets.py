"""The test suite's fake secrets, and the check that none of them leaked."""

from __future__ import annotations

API_KEY = "pk-test-SECRET-api-key-0001"
VIRTUAL_KEY = "vk-test-SECRET-virtual-key-0002"
PROVIDER_KEY = "sk-test-SECRET-provider-key-0003"
SECRETS = (API_KEY, VIRTUAL_KEY, PROVIDER_KEY)


def assert_no_secret(*texts: object) -> None:
    """Fail if any test secret appears in any of ``texts`` (``repr`` of non-strings)."""
    for text in texts:
        rendered = text if isinstance(text, str) else repr(text)
        for secret in SECRETS:
            assert secret not in rendered, f"secret leaked into: {rendered[:300]}"
