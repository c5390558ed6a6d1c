#!/usr/bin/env bash
# Try the whole flow on this machine, without any cloud: start three
# simulated Kubernetes clusters (kube-sim, on 127.0.0.1), then run
# `crdb-multiregion apply` against them, `apply` again (nothing changes),
# the full `check` (when run as root with ip, busybox, dnsmasq and iptables
# installed: the simulator then runs real probe processes in network
# namespaces and routes its load balancers, and only them, to this machine,
# so the dns-lb check runs too), and `teardown`. The clusters refuse what
# the real clouds refuse (mixed-protocol load balancers on gke and eks) and
# enforce Pod Security `restricted`. Everything happens in a scratch
# directory that is removed at the end, together with the simulator and its
# network.
#
#   tests/run-local.sh            # GKE-like clusters (kube-dns)
#   FLAVOR=eks tests/run-local.sh # CoreDNS, load balancers with hostnames
#   FLAVOR=aks tests/run-local.sh # CoreDNS with coredns-custom
#   FLAVOR=k3s tests/run-local.sh # k3s: forwarding in coredns-custom
set -euo pipefail

flavor=${FLAVOR:-gke}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# Visible on purpose: a first build compiles kube, k8s-openapi and tokio
# (minutes on a small machine), and a silent screen looks like a hang.
echo "== building crdb-multiregion and kube-sim (the first build takes a few minutes; cargo shows its progress)"
cargo build -p crdb-multiregion -p kube-sim --bins
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
bin="$target/debug"

work=$(mktemp -d)
sim_pid=
cleanup() {
  if [ -n "$sim_pid" ]; then
    kill "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

network=simulated
routes=
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v busybox >/dev/null \
  && command -v dnsmasq >/dev/null && command -v iptables >/dev/null; then
  network=real
  routes=--host-lb-routes
fi

echo "== starting three simulated $flavor clusters ($network network)"
"$bin/kube-sim" up --network "$network" --zones us-east1-b,us-west1-a,us-central1-a --flavor "$flavor" \
  --kubeconfig "$work/kubeconfig" --seed-user-dns --lb-delay-ms 1500 \
  --cloud-lb-rules --pod-security restricted $routes \
  >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
for _ in $(seq 1 100); do
  grep -q '^ready ' "$work/sim.out" 2>/dev/null && break
  kill -0 "$sim_pid" 2>/dev/null || { cat "$work/sim.err" >&2; exit 2; }
  sleep 0.1
done
grep -q '^ready ' "$work/sim.out" || { echo "kube-sim did not start" >&2; exit 2; }
# EKS load balancers report hostnames; kube-sim answers for them on this address.
dns_addr=$(sed -n 's/^kube-sim: lb-dns //p' "$work/sim.err" | head -n 1)

# config/sim.toml targets a default `kube-sim up` of these three zones.
case "$flavor" in
  eks) sed 's/^cloud = .*/cloud = "eks"/; s/^protocols = .*/protocols = ["TCP"]/' config/sim.toml ;;
  aks) sed 's/^cloud = .*/cloud = "aks"/' config/sim.toml ;;
  k3s) sed 's/^cloud = .*/cloud = "generic"/' config/sim.toml ;;
  *) cat config/sim.toml ;;
esac >"$work/config.toml"
if [ -n "$dns_addr" ]; then
  # Every command (check's dns-lb too) resolves the LB host names there.
  sed -i "s/^\[dns\]\$/[dns]\nlb_resolver = \"$dns_addr\"/" "$work/config.toml"
fi
cd "$work"
export KUBECONFIG="$work/kubeconfig"
cmd="$bin/crdb-multiregion"

echo "== crdb-multiregion apply config.toml"
"$cmd" apply config.toml ${dns_addr:+--lb-resolver "$dns_addr"}
echo
echo "== crdb-multiregion apply config.toml   (again: converged, so nothing changes)"
"$cmd" apply config.toml ${dns_addr:+--lb-resolver "$dns_addr"} --quiet
echo
if [ "$network" = real ]; then
  # --host-lb-routes made the simulated DNS load balancers reachable from
  # here, so every check runs, dns-lb included.
  echo "== crdb-multiregion check config.toml"
  "$cmd" check config.toml
else
  echo "== (check skipped: it needs root, ip, busybox, dnsmasq and iptables for real probe pods)"
fi
echo
echo "== crdb-multiregion teardown config.toml --yes"
"$cmd" teardown config.toml --yes
