"""Draw the sample image shipped with the package: a document page with text, a bar chart and a photo-like region.

    python scripts/make_sample_image.py          # writes src/vlm_encoders/assets/sample_document.png

Deterministic (fixed seed, PIL's built-in font), so the shipped file can be regenerated bit for bit.
"""

import math
import os
import random

from PIL import Image, ImageDraw, ImageFilter, ImageFont

WIDTH, HEIGHT = 900, 1200  # portrait page, aspect 3:4, so fixed-square paradigms must crop or pad
OUT = os.path.join(os.path.dirname(__file__), "..", "src", "vlm_encoders", "assets", "sample_document.png")

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


if __name__ == "__main__":
    main()
