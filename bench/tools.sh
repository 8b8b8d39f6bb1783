# Sourced by the scripts of bench/.

# Installs, from Debian's packages, whichever of the named tools is missing (nginx comes as
# nginx-light).
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

# Prints a port nothing listens on (nginx needs its ports in its config).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || {
      echo "$port"
      return
    }
  done
}

# Prints the path of llvm-profdata from rustup's llvm-tools component, added when missing.
llvm_profdata() {
  local host profdata
  host=$(rustc -vV | sed -n 's/^host: //p')
  profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
  if [ ! -x "$profdata" ]; then
    rustup component add llvm-tools >&2
  fi
  echo "$profdata"
}
