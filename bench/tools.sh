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

# Starts nginx, one worker, serving the files of DIR/www on 127.0.0.1:PORT as JSON, with its
# config, pid and error log in DIR: the upstream of the profile-guided builds' workloads.
# DIR must be readable by nginx's workers, which run as an unprivileged user.
serve_static() {
  local dir=$1 port=$2
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/json;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$port; root $dir/www; }
}
CONF
  nginx -c "$dir/nginx.conf"
}
