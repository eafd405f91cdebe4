"""The text `sty verify` runs on a host: the bash frame of the gathering script and the two Python programs it
calls (apply/verify_batch.py fills in the commands and the file list)."""

from __future__ import annotations

DATABASES = "/etc/pgbouncer/database.txt"

# A records of NAMES from SERVER:PORT with the standard library (the hosts need no dig): one line per name,
# `name ip…` or `name !error`.
DNS_QUERY = r"""
import socket, struct, sys
server, port = sys.argv[1], int(sys.argv[2])
for qid, name in enumerate(sys.argv[3:]):
    try:
        q = struct.pack(">HHHHHH", qid + 1, 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.sendto(q, (server, port))
        r = s.recv(512); n = struct.unpack(">H", r[6:8])[0]; i = len(q); ips = []
        for _ in range(n):
            i += 2 if r[i] & 0xC0 == 0xC0 else r.index(b"\0", i) + 1 - i
            t, _, _, ln = struct.unpack(">HHIH", r[i:i + 10]); i += 10
            if t == 1: ips.append(socket.inet_ntoa(r[i:i + 4]))
            i += ln
        print(name, *ips)
    except Exception as exc:
        print(name, "!" + type(exc).__name__ + ":", exc)
"""

# Pigsty's etcd RBAC asked the way Patroni asks: etcd's JSON gateway with the credentials and certificate of
# patroni.yml, over one TLS connection. Prints each answer as JSON; a host without PyYAML prints
# {"unavailable": ...} (Patroni needs it, so its hosts have it).
ETCD_RBAC = r"""
import base64, http.client, json, ssl, sys
try:
    import yaml
except ImportError as exc:
    print(json.dumps({"unavailable": str(exc)})); sys.exit(0)
conf = yaml.safe_load(open(sys.argv[1]))
dcs = conf["etcd3"]
tls = ssl.create_default_context(cafile=dcs["cacert"])
tls.load_cert_chain(dcs["cert"], dcs["key"])
host, _, port = dcs["hosts"][0].rpartition(":")
conn = http.client.HTTPSConnection(host, int(port), context=tls, timeout=5)
b64 = lambda b: base64.b64encode(b).decode()
def post(path, body, token=""):
    try:
        conn.request("POST", path, json.dumps(body), {"Authorization": token} if token else {})
        answer = conn.getresponse()
        return {"rc": 0, "stdout": answer.read().decode(), "stderr": ""}
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        return {"rc": 1, "stdout": "", "stderr": f"{type(exc).__name__}: {exc}"}
def keys(prefix, token):
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    return post("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end), "keys_only": True}, token)
out = {"user": dcs["username"], "prefix": conf["namespace"].rstrip("/") + "/" + conf["scope"] + "/"}
out["auth"] = post("/v3/auth/authenticate", {"name": dcs["username"], "password": dcs["password"]})
try:
    token = json.loads(out["auth"]["stdout"]).get("token")
except ValueError:
    token = None
if token:
    out["mine"] = keys(out["prefix"].encode(), token)
    out["other"] = keys(b"/", token)
print(json.dumps(out))
"""

SCRIPT_HEAD = r"""main() {
export LC_ALL=C
R=${STY_VERIFY_ROOT:-}  # a fake root in the unit tests; empty on a host
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
n=0
cap() {  # NAME COMMAND: run COMMAND in the background; its exit code and output become one @cmd record
  n=$((n + 1))
  f="$T/$n"
  {
    ( eval "$2" ) >"$f.o" 2>"$f.e" </dev/null
    rc=$?
    printf '@cmd %s %s %s %s\n' "$1" "$rc" "$(base64 -w0 <"$f.o")" "$(base64 -w0 <"$f.e")" >"$f.r"
  } &
}
pooled() {  # the databases of pgbouncer's database.txt, as pooled_databases() reads them
  [ -r "$R"DATABASES ] || return 0
  while IFS= read -r l || [ -n "$l" ]; do
    case $l in ';'*) continue ;; esac
    t=${l#"${l%%[![:space:]]*}"}
    [ -n "$t" ] || continue
    d=${l%%=*}; d=${d#"${d%%[![:space:]]*}"}; d=${d%"${d##*[![:space:]]}"}
    printf '%s\n' "$d"
  done <"$R"DATABASES
}
files() {  # KIND PATH lines on stdin (F: a whole file, B: a marked block): existence, digest, owner, mode
  while IFS= read -r line; do
    k=${line%% *}; p=${line#* }
    if [ -e "$R$p" ]; then
      s=-
      if [ "$k" = F ]; then s=$(sha256sum -- "$R$p" 2>/dev/null) && s=${s%% *} && s=${s#\\} || s=-; fi
      m=$(stat -c '%U %G %a' -- "$R$p" 2>/dev/null) || m='? ? ?'
      printf '@file 1 %s %s %s\n' "$s" "$m" "$p"
    else
      printf '@file 0 - - - - %s\n' "$p"
    fi
  done
}
""".replace("DATABASES", DATABASES)

SCRIPT_TAIL = r"""wait
cat "$T"/*.r 2>/dev/null
echo @end
}
main </dev/null
"""
