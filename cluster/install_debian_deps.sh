#!/usr/bin/env bash
# Debian packages for the tests: a real single-node Slurm (with slurmdbd + MariaDB so sacct
# works), munge, a small TeX Live for compiling generated tables, and FFmpeg's shared libraries
# (torchcodec, data.decoder=torchcodec, loads them). Idempotent; needs root.
set -euo pipefail
PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server slurm-wlm-mysql-plugin
      texlive-latex-base texlive-latex-recommended ffmpeg)
if [ "$(id -u)" != 0 ]; then
  echo "install_debian_deps: not root, skipping apt-get (tests needing these parts will skip)" >&2
  exit 0
fi
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install_debian_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
