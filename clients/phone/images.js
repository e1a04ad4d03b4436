// Photos are downscaled on the phone before upload: long side at most 1600 px, JPEG 0.85.
// Re-encoding through a canvas applies the EXIF orientation and drops all EXIF (GPS too).

export const MAX_SIDE = 1600;
export const QUALITY = 0.85;
export const MIN_SIDE = 320; // the box's quality gate refuses photos with a shorter side

async function decode(file) {
  try {
    const bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
    return { source: bitmap, width: bitmap.width, height: bitmap.height };
  } catch {
    // Older browsers: an <img> applies EXIF orientation by default (image-orientation).
    const url = URL.createObjectURL(file);
    try {
      const img = new Image();
      img.src = url;
      await img.decode();
      return { source: img, width: img.naturalWidth, height: img.naturalHeight };
    } finally {
      URL.revokeObjectURL(url);
    }
  }
}

/** {blob, width, height, sourceWidth, sourceHeight} of a picked or captured photo. */
export async function prepareImage(file) {
  const { source, width, height } = await decode(file);
  const scale = Math.min(1, MAX_SIDE / Math.max(width, height));
  const w = Math.max(1, Math.round(width * scale));
  const h = Math.max(1, Math.round(height * scale));
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d', { alpha: false });
  ctx.fillStyle = '#fff'; // transparent PNG areas become white, not black
  ctx.fillRect(0, 0, w, h);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(source, 0, 0, w, h);
  source.close?.();
  const blob = await new Promise((resolve, reject) => {
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('encode failed'))), 'image/jpeg', QUALITY);
  });
  canvas.width = 0; // free the bitmap memory now, cheap phones have little
  canvas.height = 0;
  return { blob, width: w, height: h, sourceWidth: width, sourceHeight: height };
}
