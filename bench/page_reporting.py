#!/usr/bin/python3
"""Free page reporting off for the length of a benchmark, so every contender's memory costs the same.

    bench/page_reporting.py off          turns it off; prints the setting to give back ("-": none)
    bench/page_reporting.py restore V    gives back the setting `off` printed

In a virtual machine whose balloon driver reports free memory to the host (virtio-balloon free
page reporting: /sys/module/page_reporting), memory the guest frees is handed back to the host
after a moment, and the next use of those pages faults in the host. A read that follows a pause
or a dropped page cache then spends 2-10x the CPU in its copies (measured here: a 1 GiB pread
of a cold file took 0.06 s of CPU when it followed the drop at once, 0.57 s after 5 s of idle,
2.2 s after 15 s), which lands on whichever contender ran first after a pause, and on the page
cache and buffers of every server. Reporting only considers free blocks of at least
page_reporting_order; an order above the largest the kernel has means none qualifies.
On a machine without the module (bare metal) this does nothing.
"""
import contextlib
import sys

PARAM = "/sys/module/page_reporting/parameters/page_reporting_order"
NEVER = "11"  # above MAX_PAGE_ORDER (10): no free block is ever reported


def off():
    """Returns the previous setting, or None when there is nothing to turn off."""
    try:
        with open(PARAM) as f:
            old = f.read().strip()
        with open(PARAM, "w") as f:
            f.write(NEVER + "\n")
        return old
    except OSError:
        return None


def restore(old):
    if old is None or old == "-":
        return
    try:
        with open(PARAM, "w") as f:
            f.write(old + "\n")
    except OSError as e:
        print(f"page_reporting: cannot restore {PARAM} to {old}: {e}", file=sys.stderr)


@contextlib.contextmanager
def held_off():
    """Reporting off for the body of a `with`, given back however it ends."""
    old = off()
    try:
        yield
    finally:
        restore(old)


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "off":
        print(off() or "-")
    elif len(sys.argv) == 3 and sys.argv[1] == "restore":
        restore(sys.argv[2])
    else:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
