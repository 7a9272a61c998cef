package org.gleammri.engine;

import java.util.Optional;

/** Image arithmetic of the engine: magnitude and the centre crop of gleam recon's {@code output_crop}. */
public final class ImageOps {
    private ImageOps() {
    }

    /** {@code |x|} of an interleaved complex image {@code (H, W, 2)}, as float32 {@code (H, W)}. */
    public static float[] magnitude(float[] complex) {
        float[] out = new float[complex.length / 2];
        for (int i = 0; i < out.length; i++) {
            double re = complex[2 * i];
            double im = complex[2 * i + 1];
            out[i] = (float) Math.sqrt(re * re + im * im);
        }
        return out;
    }

    /**
     * The centred {@code h x w} window of an image {@code (H, W)}, starting at {@code ((H - h) / 2,
     * (W - w) / 2)} (fastMRI's crop, gleam-mri's {@code center_crop}).
     *
     * @throws IllegalArgumentException when the window does not fit
     */
    public static float[] centerCrop(float[] image, int height, int width, int h, int w) {
        if (image.length != height * width) {
            throw new IllegalArgumentException("image of " + image.length + " values is not " + height + " x " + width);
        }
        if (h < 1 || w < 1 || h > height || w > width) {
            throw new IllegalArgumentException("cannot crop an image of shape (" + height + ", " + width + ") to (" + h + ", " + w + ")");
        }
        int top = (height - h) / 2;
        int left = (width - w) / 2;
        float[] out = new float[h * w];
        for (int r = 0; r < h; r++) {
            System.arraycopy(image, (top + r) * width + left, out, r * w, w);
        }
        return out;
    }

    /**
     * The output size of gleam recon's {@code output_crop} for an image {@code (H, W)}: the target's
     * {@code (h, w)} when the file has {@code reconstruction_rss}; else the header's recon matrix
     * {@code (x, y)} when it fits; else the image's own size.
     *
     * @throws IllegalArgumentException when the target is larger than the image
     */
    public static int[] outputSize(int height, int width, Optional<int[]> target, IsmrmrdHeader header) {
        if (target.isPresent()) {
            int[] t = target.get();
            if (t[0] > height || t[1] > width) {
                throw new IllegalArgumentException("cannot crop an image of shape (" + height + ", " + width
                        + ") to the target's (" + t[0] + ", " + t[1] + ")");
            }
            return new int[] {t[0], t[1]};
        }
        Optional<int[]> recon = header.reconSize();
        if (recon.isPresent()) {
            int[] r = recon.get();
            if (r[0] > 0 && r[1] > 0 && r[0] <= height && r[1] <= width) {
                return new int[] {r[0], r[1]};
            }
        }
        return new int[] {height, width};
    }
}
