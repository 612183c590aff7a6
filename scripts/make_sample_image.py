"""Draw the sample images shipped with the package, chosen so that the paradigms differ visibly:

  sample_document.png  900x1200  a portrait page: text, a bar chart and a photo-like region
  sample_chart.png     1000x700  a line chart with small tick labels (fine detail in a landscape image)
  sample_banner.png    1600x320  a wide banner (aspect 5:1: squashing, cropping and padding all hurt)
  sample_scene.png     1024x768  a photo-like scene (smooth regions and edges, little text)

    python scripts/make_sample_image.py          # writes them to src/vlm_encoders/assets/

Deterministic (fixed seeds, PIL's built-in font), so the shipped files can be regenerated bit for bit.
"""

import math
import os
import random

from PIL import Image, ImageDraw, ImageFilter, ImageFont

WIDTH, HEIGHT = 900, 1200  # portrait page, aspect 3:4, so fixed-square paradigms must crop or pad
ASSETS = os.path.join(os.path.dirname(__file__), "..", "src", "vlm_encoders", "assets")
OUT = os.path.join(ASSETS, "sample_document.png")

WORDS = ("token vision encoder patch image model resolution budget window attention compress layer tile slice "
         "native grid pixel merge query latent").split()


def text_block(draw, rng, box, font, line_height=18):
    x0, y0, x1, y1 = box
    y = y0
    while y + line_height <= y1:
        line, width = [], 0
        while True:
            word = rng.choice(WORDS)
            w = draw.textlength(word + " ", font=font)
            if x0 + width + w > x1:
                break
            line.append(word)
            width += w
        draw.text((x0, y), " ".join(line), fill=(20, 20, 20), font=font)
        y += line_height


def bar_chart(draw, rng, box, font):
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(90, 90, 90), width=2)
    colors = [(52, 101, 164), (204, 0, 0), (78, 154, 6), (196, 160, 0), (117, 80, 123)]
    n = 7
    bar_w = (x1 - x0 - 40) / n
    for i in range(n):
        h = rng.uniform(0.15, 0.9) * (y1 - y0 - 40)
        left = x0 + 25 + i * bar_w
        draw.rectangle((left, y1 - 20 - h, left + bar_w * 0.7, y1 - 20), fill=colors[i % len(colors)])
        draw.text((left, y1 - 17), f"Q{i + 1}", fill=(0, 0, 0), font=font)
    draw.text((x0 + 8, y0 + 6), "Tokens per image by paradigm", fill=(0, 0, 0), font=font)


def photo_region(size, rng):
    """Sky gradient, hills, a sun and blurred texture: smooth regions and edges, like a photo."""
    w, h = size
    img = Image.new("RGB", size)
    px = img.load()
    for y in range(h):
        for x in range(w):
            t = y / h
            px[x, y] = (int(90 + 120 * t), int(150 + 60 * t), int(230 - 80 * t))
    draw = ImageDraw.Draw(img)
    draw.ellipse((w * 0.68, h * 0.12, w * 0.85, h * 0.12 + w * 0.17), fill=(255, 214, 90))
    for k, (color, base) in enumerate([((60, 120, 60), 0.55), ((40, 95, 45), 0.7), ((30, 70, 35), 0.82)]):
        points = [(0, h)]
        for x in range(0, w + 10, 10):
            y = h * base + 25 * math.sin(x / (40 + 15 * k) + k) + rng.uniform(-4, 4)
            points.append((x, y))
        points.append((w, h))
        draw.polygon(points, fill=color)
    return img.filter(ImageFilter.GaussianBlur(1.2))


def line_chart(rng) -> Image.Image:
    w, h = 1000, 700
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    small, title = ImageFont.load_default(size=12), ImageFont.load_default(size=24)
    x0, y0, x1, y1 = 90, 70, w - 40, h - 80
    draw.text((x0, 20), "Visual tokens vs. accuracy (synthetic)", fill=(0, 0, 0), font=title)
    for i in range(11):  # grid and tick labels: small text a low-resolution encoder cannot read
        y = y1 - i * (y1 - y0) / 10
        draw.line((x0, y, x1, y), fill=(225, 225, 225))
        draw.text((x0 - 40, y - 7), f"{i * 10}%", fill=(60, 60, 60), font=small)
        x = x0 + i * (x1 - x0) / 10
        draw.line((x, y0, x, y1), fill=(235, 235, 235))
        draw.text((x - 12, y1 + 8), f"{2 ** (i + 4)}", fill=(60, 60, 60), font=small)
    draw.rectangle((x0, y0, x1, y1), outline=(0, 0, 0), width=2)
    for k, color in enumerate([(204, 0, 0), (52, 101, 164), (78, 154, 6), (117, 80, 123)]):
        points, level = [], rng.uniform(0.1, 0.3)
        for i in range(41):
            level = min(0.95, level + rng.uniform(0.0, 0.04) * (1 - level) * (1 + k / 3))
            points.append((x0 + i * (x1 - x0) / 40, y1 - level * (y1 - y0)))
        draw.line(points, fill=color, width=3)
        draw.text((x1 - 150, y0 + 15 + 18 * k), f"paradigm {k + 1}", fill=color, font=small)
    return img


def banner(rng) -> Image.Image:
    w, h = 1600, 320
    img = Image.new("RGB", (w, h))
    px = img.load()
    for x in range(w):  # horizontal gradient background
        t = x / w
        for y in range(h):
            px[x, y] = (int(30 + 60 * t), int(40 + 30 * t), int(90 + 100 * t))
    draw = ImageDraw.Draw(img)
    draw.text((60, 70), "ONE INTERFACE FOR EVERY VISUAL TOKENIZER", fill=(255, 255, 255),
              font=ImageFont.load_default(size=56))
    draw.text((62, 170), "patches  tiles  slices  windows  packed sequences  compression", fill=(210, 220, 255),
              font=ImageFont.load_default(size=30))
    for i in range(12):
        cx = 1280 + 30 * (i % 4)
        cy = 60 + 60 * (i // 4) + rng.randint(-5, 5)
        draw.rectangle((cx, cy, cx + 22, cy + 22), outline=(255, 214, 90), width=2)
    return img


def scene(rng) -> Image.Image:
    img = photo_region((1024, 768), rng)
    draw = ImageDraw.Draw(img)
    for i in range(6):  # a few trees: edges on a smooth background
        x = 80 + i * 150 + rng.randint(-20, 20)
        base = 560 + rng.randint(-15, 15)
        draw.rectangle((x, base - 60, x + 12, base), fill=(70, 45, 25))
        draw.ellipse((x - 35, base - 150, x + 47, base - 50), fill=(35 + 10 * i, 90, 40))
    return img.filter(ImageFilter.GaussianBlur(0.8))


def main():
    rng = random.Random(0)
    page = Image.new("RGB", (WIDTH, HEIGHT), (250, 250, 247))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=15)
    title = ImageFont.load_default(size=30)
    draw.text((60, 45), "Visual tokenization report", fill=(10, 10, 10), font=title)
    draw.line((60, 90, WIDTH - 60, 90), fill=(60, 60, 60), width=2)
    text_block(draw, rng, (60, 110, WIDTH - 60, 330), font)
    bar_chart(draw, rng, (60, 360, 470, 640), font)
    text_block(draw, rng, (500, 360, WIDTH - 60, 640), font)
    page.paste(photo_region((WIDTH - 120, 330), rng), (60, 670))
    draw.text((60, 1008), "Figure 2: a photo-like region next to text and a chart.", fill=(40, 40, 40), font=font)
    text_block(draw, rng, (60, 1040, WIDTH - 60, HEIGHT - 50), font)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    page.save(OUT, optimize=True)
    print(f"wrote {os.path.normpath(OUT)} ({WIDTH}x{HEIGHT})")
    for name, make, seed in (("sample_chart.png", line_chart, 1), ("sample_banner.png", banner, 2),
                             ("sample_scene.png", scene, 3)):
        image = make(random.Random(seed))
        path = os.path.join(ASSETS, name)
        image.save(path, optimize=True)
        print(f"wrote {os.path.normpath(path)} ({image.width}x{image.height})")


if __name__ == "__main__":
    main()
