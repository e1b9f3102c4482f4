"""Opens report.html in a real browser, headless Chromium (Debian's), and
checks what a reader would see:
  - the page loads with no console message and no failed resource (Chromium's
    log of the page's console, --enable-logging=stderr);
  - the rendered DOM (--dump-dom) has every section;
  - a full-page screenshot is not blank: the charts' colours and the text are
    there, and the content ends above the screenshot's bottom, so every section
    is in it.
A negative control (a page with a broken image and a console.error) must be
caught, so the console check can fail.

    report_browser.py REPORT_HTML [SCREENSHOT_PNG]
"""
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

SECTIONS = ("metrics", "charts", "operating-points", "confusion", "false-negatives", "false-positives")
WIDTH, HEIGHT = 1200, 6000


def chromium(args, profile):
    cmd = ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--hide-scrollbars", "--no-first-run", "--enable-logging=stderr", "--v=0",
           f"--user-data-dir={profile}"] + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def console_problems(stderr):
    return [l for l in stderr.splitlines() if "CONSOLE" in l or "Failed to load resource" in l or "Uncaught" in l]


def png_rows(path):
    """(width, height, rows of RGB bytes) of an 8-bit RGB or RGBA PNG, without a library."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = int.from_bytes(body[0:4], "big"), int.from_bytes(body[4:8], "big"), body[8], body[9]
            assert depth == 8 and ctype in (2, 6), f"PNG type {ctype}/{depth}"
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, rows, prev, stride = zlib.decompress(idat), [], bytearray(w * bpp), w * bpp
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line[k] for i in range(w) for k in range(i * bpp, i * bpp + 3)))
        prev = line
    return w, h, rows


def main():
    report = os.path.abspath(sys.argv[1])
    shot = sys.argv[2] if len(sys.argv) > 2 else None
    work = tempfile.mkdtemp(prefix="ich_browser_")
    try:
        # the negative control: the console check must see a broken page
        bad = os.path.join(work, "bad.html")
        with open(bad, "w") as f:
            f.write('<html><body><img src="missing.png"><script>console.error("broken")</script></body></html>')
        if not console_problems(chromium(["--dump-dom", "file://" + bad], os.path.join(work, "p0")).stderr):
            sys.exit("the console check sees nothing on a broken page: it cannot fail")
        dom = chromium(["--dump-dom", "file://" + report], os.path.join(work, "p1"))
        if dom.returncode != 0:
            sys.exit(f"chromium --dump-dom exited {dom.returncode}: {dom.stderr[-400:]}")
        problems = console_problems(dom.stderr)
        if problems:
            sys.exit(f"console: {problems[:3]}")
        missing = [s for s in SECTIONS if f'id="{s}"' not in dom.stdout]
        if missing:
            sys.exit(f"the rendered page lacks sections {missing}")
        png = os.path.join(work, "shot.png")
        for height in (HEIGHT, 2 * HEIGHT, 4 * HEIGHT):  # tall enough for the whole page: a longer report gets a taller shot
            r = chromium([f"--window-size={WIDTH},{height}", f"--screenshot={png}", "file://" + report],
                         os.path.join(work, "p2"))
            if r.returncode != 0 or not os.path.exists(png):
                sys.exit(f"no screenshot: {r.stderr[-400:]}")
            if console_problems(r.stderr):
                sys.exit(f"console: {console_problems(r.stderr)[:3]}")
            w, h, rows = png_rows(png)
            inked = [y for y, row in enumerate(rows) if any(v < 200 for v in row)]
            if len(inked) < 500:
                sys.exit(f"the screenshot is nearly blank ({len(inked)} rows with anything on them)")
            if inked[-1] <= h - 100:
                break
        else:
            sys.exit(f"the page runs past a {h}-pixel screenshot: not every section is in it")
        # the charts' series colours (the chromatic ones of report/plot.cpp's palette) are on the page
        palette = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                   (227, 119, 194), (188, 189, 34), (23, 190, 207)]
        def charted(r, g, b):
            return any(abs(r - p[0]) < 20 and abs(g - p[1]) < 20 and abs(b - p[2]) < 20 for p in palette)
        blue = sum(1 for row in rows for i in range(0, len(row), 3)
                   if max(row[i:i + 3]) - min(row[i:i + 3]) > 60 and charted(row[i], row[i + 1], row[i + 2]))
        if blue < 300:
            sys.exit(f"only {blue} pixels of the charts' colours: are the charts shown?")
        if shot:
            cut = min(h, inked[-1] + 40)
            # keep the screenshot down to the content (PNG re-encoded by ourselves: no library)
            raw = b"".join(b"\x00" + rows[y] for y in range(cut))
            def chunk(k, b):
                return len(b).to_bytes(4, "big") + k + b + zlib.crc32(k + b).to_bytes(4, "big")
            with open(shot, "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", w.to_bytes(4, "big") + cut.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0]))
                        + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
        print(f"browser: Chromium rendered {report} without console messages; {len(SECTIONS)} sections; "
              f"content {inked[-1] + 1} px tall of {h}; {blue} chart pixels")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
