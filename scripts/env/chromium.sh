# Chromium and its chromedriver, from Debian's packages: the dashboard's
# browser tests (crates/depman/tests/ui) drive them. Nothing runs until a
# test starts one of each.

CHROMIUM_BIN=/usr/bin/chromium
CHROMEDRIVER_BIN=/usr/bin/chromedriver

chromium_up() {
  [[ -x $CHROMIUM_BIN && -x $CHROMEDRIVER_BIN ]] && return 0
  require_command apt-get "Chromium is missing and there is no apt-get: install chromium and chromium-driver (as $CHROMIUM_BIN and $CHROMEDRIVER_BIN)"
  [[ $(id -u) == 0 ]] || die "Chromium is missing: run 'sudo apt-get install -y chromium chromium-driver', then make env again"
  say "installing Chromium and chromedriver from Debian's packages"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } ||
    die "apt-get install chromium chromium-driver failed (output above): check that Debian's package mirror is reachable"
  [[ -x $CHROMEDRIVER_BIN ]] || die "chromium-driver was installed but $CHROMEDRIVER_BIN is missing"
}

chromium_status() {
  if [[ -x $CHROMEDRIVER_BIN ]]; then
    printf '%-10s %s\n' chromium "installed ($("$CHROMIUM_BIN" --version 2>/dev/null | head -1))"
  else
    printf '%-10s %s\n' chromium "missing (make env installs it)"
  fi
}
