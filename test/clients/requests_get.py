"""A Python client for tailgate's compatibility test: one GET through a proxy with `requests` (and PySocks for
socks5:// and socks5h:// proxy URLs), as Python programs usually make it.

Usage: requests_get.py PROXY_URL TARGET_URL [CA_FILE]
Prints one JSON object: {"status", "body"} when an answer came, {"error", "type"} when none did (exit 0 both ways,
so the caller sees the client's own words either way; exit 2 when requests or PySocks is missing).
"""
import json
import sys

try:
    import requests
    import socks  # noqa: F401  (PySocks: requests needs it for socks5:// and socks5h://)
except ImportError as err:
    print(f"{err}: install Debian's python3-requests and python3-socks (apt-get install -y python3-requests python3-socks)"
          " and run them with /usr/bin/python3", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    proxy, url = sys.argv[1], sys.argv[2]
    verify = sys.argv[3] if len(sys.argv) > 3 else True
    try:
        res = requests.get(url, proxies={"http": proxy, "https": proxy}, verify=verify, timeout=10)
        print(json.dumps({"status": res.status_code, "body": res.text}))
    except requests.RequestException as err:
        print(json.dumps({"error": str(err), "type": type(err).__name__}))


main()
