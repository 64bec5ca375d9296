"""``veil image``: share an image among n holders (any k recover it), hidden in cover images.

Threat model: fewer than k share holders learn nothing about the image; an altered share is
detected at recovery; the dealer who shares the image is trusted. Steganography hides that
an image carries a share; it is not what keeps the image secret.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help=__doc__.split("\n\n")[0].removeprefix("``veil image``: "), no_args_is_help=True
)

KEY_FILE = "stego.key"


@app.command("share")
def share(
    image: Path = typer.Argument(..., help="DICOM file, or PNG/TIFF image (8/16-bit)."),
    k: int = typer.Option(3, "--k", help="Shares needed to recover."),
    n: int = typer.Option(5, "--n", help="Shares made."),
    covers: Path = typer.Option(None, help="Folder of lossless cover images (PNG/TIFF)."),
    bits: int = typer.Option(1, help="Bits per channel value in covers (1 or 2)."),
    out: Path = typer.Option(Path("shares"), "--out", "-o", help="Output folder."),
    keep_identifying: bool = typer.Option(
        False, help="DICOM: keep patient names, IDs, dates and private tags (removed by default)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing share files."),
) -> None:
    """Split IMAGE into N shares; without --covers they are .vshare files."""
    import secrets

    from veil.core.errors import refuse_overwrite
    from veil.core.guarantees import Ledger
    from veil.core.io import atomic_write, write_private
    from veil.imaging.dicom import is_dicom
    from veil.imaging.images import hide_in_covers, share_file, sharing_guarantee
    from veil.imaging.stego import cover_files, read_cover, write_png

    shares, removed, _ = share_file(image, k, n, keep_identifying)
    if is_dicom(image):
        typer.echo(f"DICOM attributes removed before sharing: {', '.join(removed) or 'none'}")
    files = cover_files(covers, n) if covers else []
    names = [
        out / (f"share-{s.index}.png" if covers else f"share-{s.index}.vshare") for s in shares
    ]
    for path in [*names, out / KEY_FILE, out / "ledger.json"] if covers else names:
        refuse_overwrite(path, force)
    out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.start(f"share {image.name}", command="veil image share")
    if not covers:
        for s, path in zip(shares, names, strict=True):
            atomic_write(path, s.to_bytes())
        ledger.add(sharing_guarantee(k, n, image.name, removed=removed))
        ledger.finish(status="ok")
        ledger.save(out / "ledger.json")
        typer.echo(f"wrote {n} shares and ledger.json to {out}/ (any {k} recover {image.name})")
        return
    key = secrets.token_bytes(32)
    stegos, carriers = hide_in_covers(
        shares, [read_cover(f) for f in files], [f.name for f in files], key, bits
    )
    for path, stego, c in zip(names, stegos, carriers, strict=True):
        write_png(path, stego)
        quality = f"PSNR {c['psnr_db']:.1f} dB, SSIM {c['ssim']:.5f}"
        typer.echo(f"{path}: share {c['share']} in {c['cover']}, {quality}")
    write_private(out / KEY_FILE, key.hex() + "\n")
    ledger.add(sharing_guarantee(k, n, image.name, carriers, removed))
    ledger.finish(status="ok")
    ledger.save(out / "ledger.json")
    typer.echo(f"stego key in {out / KEY_FILE}: give it to whoever recovers, never with the shares")


@app.command("recover")
def recover(
    shares: list[Path] = typer.Argument(..., help="Share files (.vshare) or stego images."),
    out: Path = typer.Option(..., "--out", "-o", help="Image file to write."),
    key: Path = typer.Option(None, help="Stego key file (for shares hidden in images)."),
    bits: int = typer.Option(1, help="Bits per channel value used when hiding."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT."),
) -> None:
    """Recover the image from at least k shares; tampered shares are named and skipped."""
    from veil.core.errors import refuse_overwrite
    from veil.imaging.dicom import recover_dicom, write_dicom
    from veil.imaging.images import read_share, recover_image, write_image
    from veil.imaging.stego import read_key

    refuse_overwrite(out, force)
    parts = [read_share(p, read_key(key), bits) for p in shares]
    if parts[0].meta.get("kind") == "dicom":
        ds, meta = recover_dicom(parts)
        write_dicom(out, ds)
    else:
        pixels, meta = recover_image(parts)
        write_image(out, pixels, meta.get("format", "PNG"))
    note = f"; rejected tampered shares {meta['rejected']}" if meta["rejected"] else ""
    typer.echo(
        f"wrote {out} ({meta['dtype']} {tuple(meta['shape'])}) from shares {meta['used']}{note}"
    )


@app.command("inspect")
def inspect(
    share_file: Path = typer.Argument(..., help="A share (.vshare) or a stego image."),
    key: Path = typer.Option(None, help="Stego key file (for stego images)."),
    bits: int = typer.Option(1, help="Bits per channel value used when hiding."),
) -> None:
    """Show a share's header: index, k of n, sharing id, image shape and dtype."""
    import json

    from veil.imaging.images import read_share
    from veil.imaging.stego import read_key

    s = read_share(share_file, read_key(key), bits)
    typer.echo(
        json.dumps(
            {
                "index": s.index,
                "k": s.k,
                "n": s.n,
                "sharing_id": s.sharing_id,
                "payload_bytes": len(s.payload),
                "meta": s.meta,
            },
            indent=2,
        )
    )
