# Sourced by bench/run.sh, bench/soak.sh and bench/pgo.sh: installs, from Debian's packages,
# whichever of the named tools is missing (nginx comes as nginx-light).
install_missing_tools() {
  local missing=() pkgs=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  for tool in "${missing[@]}"; do
    case "$tool" in nginx) pkgs+=(nginx-light) ;; *) pkgs+=("$tool") ;; esac
  done
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
}
