#!/bin/sh
# /init of the small Linux guest the node tests boot: report reaching
# userspace with the uptime, then power off (ACPI S5).
mount -t proc proc /proc
echo "canopy-guest: userspace up after $(cut -d' ' -f1 /proc/uptime)s, $(grep -c ^processor /proc/cpuinfo) cpus"
poweroff -f
