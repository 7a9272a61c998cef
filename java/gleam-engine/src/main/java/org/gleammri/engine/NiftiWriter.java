package org.gleammri.engine;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.GZIPOutputStream;

/**
 * A minimal NIfTI-1 writer for magnitude volumes, laid out as gleam-mri's {@code write_nifti}
 * lays out 2D volumes: float32 (datatype 16), data axes {@code (x = W, y = H, z = slices)}, voxel
 * sizes {@code (dx, dy, dz)} mm, qform and sform (code 2, aligned) both the affine
 * {@code diag(-dx, -dy, dz)}, units mm and s. Single file ({@code n+1}), the data at byte 352;
 * gzip-compressed when the name ends in {@code .gz}.
 */
public final class NiftiWriter {
    /** NIfTI-1's header size. */
    public static final int HEADER_SIZE = 348;
    /** Where the data start: the header and four bytes of (empty) extension flags. */
    public static final int VOX_OFFSET = 352;
    /** NIfTI-1's {@code DT_FLOAT32}. */
    public static final short DT_FLOAT32 = 16;

    private NiftiWriter() {
    }

    /**
     * The 352 bytes before the data of a float32 volume of {@code slices x height x width}.
     *
     * @param voxelMm {@code (dx, dy, dz)}: along W, along H, between slices
     */
    public static byte[] header(int slices, int height, int width, double[] voxelMm) {
        if (slices < 1 || height < 1 || width < 1) {
            throw new IllegalArgumentException("empty volume " + slices + " x " + height + " x " + width);
        }
        if (slices > Short.MAX_VALUE || height > Short.MAX_VALUE || width > Short.MAX_VALUE) {
            throw new IllegalArgumentException("NIfTI-1 dimensions are at most 32767");
        }
        float dx = (float) voxelMm[0];
        float dy = (float) voxelMm[1];
        float dz = (float) voxelMm[2];
        ByteBuffer b = ByteBuffer.allocate(VOX_OFFSET).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(0, HEADER_SIZE);
        b.put(38, (byte) 'r'); // regular
        short[] dim = {3, (short) width, (short) height, (short) slices, 1, 1, 1, 1};
        for (int i = 0; i < 8; i++) {
            b.putShort(40 + 2 * i, dim[i]);
        }
        b.putShort(70, DT_FLOAT32);
        b.putShort(72, (short) 32); // bitpix
        float[] pixdim = {1f, dx, dy, dz, 1f, 1f, 1f, 1f}; // pixdim[0]: qfac = 1
        for (int i = 0; i < 8; i++) {
            b.putFloat(76 + 4 * i, pixdim[i]);
        }
        b.putFloat(108, VOX_OFFSET);
        b.putFloat(112, 1f); // scl_slope: stored values are the values
        b.putFloat(116, 0f); // scl_inter
        b.put(123, (byte) (2 | 8)); // xyzt_units: NIFTI_UNITS_MM | NIFTI_UNITS_SEC
        byte[] descrip = "gleam-mri java engine".getBytes(StandardCharsets.US_ASCII);
        b.put(148, descrip);
        b.putShort(252, (short) 2); // qform_code: NIFTI_XFORM_ALIGNED_ANAT
        b.putShort(254, (short) 2); // sform_code
        // quaternion of diag(-1, -1, 1), a half turn about z: (a, b, c, d) = (0, 0, 0, 1)
        b.putFloat(256, 0f);
        b.putFloat(260, 0f);
        b.putFloat(264, 1f);
        // qoffset_x, y, z: 0 (the first voxel at the origin)
        float[][] srow = {{-dx, 0, 0, 0}, {0, -dy, 0, 0}, {0, 0, dz, 0}};
        for (int r = 0; r < 3; r++) {
            for (int c = 0; c < 4; c++) {
                b.putFloat(280 + 16 * r + 4 * c, srow[r][c]);
            }
        }
        b.put(344, "n+1\0".getBytes(StandardCharsets.US_ASCII));
        // bytes 348..351: extension flags, none
        return b.array();
    }

    /**
     * Writes {@code volume} (slices of {@code height x width}, row-major: the fastest axis is W,
     * NIfTI's x) to {@code path}, gzip-compressed when its name ends in {@code .gz}.
     */
    public static void write(Path path, float[][] volume, int height, int width, double[] voxelMm) throws IOException {
        write(path, path.getFileName().toString().endsWith(".gz"), volume, height, width, voxelMm);
    }

    /** {@link #write(Path, float[][], int, int, double[])}, gzip-compressed when {@code gz}. */
    public static void write(Path path, boolean gz, float[][] volume, int height, int width, double[] voxelMm)
            throws IOException {
        byte[] head = header(volume.length, height, width, voxelMm);
        try (OutputStream file = new BufferedOutputStream(Files.newOutputStream(path), 1 << 16);
                OutputStream out = gz ? new GZIPOutputStream(file, 1 << 16) : file) {
            out.write(head);
            ByteBuffer row = ByteBuffer.allocate(4 * height * width).order(ByteOrder.LITTLE_ENDIAN);
            for (float[] slice : volume) {
                if (slice.length != height * width) {
                    throw new IllegalArgumentException("slice of " + slice.length + " values is not " + height + " x " + width);
                }
                row.clear();
                row.asFloatBuffer().put(slice);
                out.write(row.array());
            }
        }
    }
}
