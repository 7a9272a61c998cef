package org.gleammri.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.zip.GZIPInputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class NiftiWriterTest {
    @TempDir
    Path tmp;

    private static ByteBuffer le(byte[] bytes) {
        return ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    }

    @Test
    void headerFieldsAreNiftiOnesForAFloatVolume() {
        ByteBuffer b = le(NiftiWriter.header(5, 32, 24, new double[] {0.5, 0.7, 3.0}));
        assertEquals(352, b.capacity());
        assertEquals(348, b.getInt(0));
        short[] dim = new short[8];
        for (int i = 0; i < 8; i++) {
            dim[i] = b.getShort(40 + 2 * i);
        }
        assertArrayEquals(new short[] {3, 24, 32, 5, 1, 1, 1, 1}, dim); // x = W, y = H, z = slices
        assertEquals(16, b.getShort(70)); // float32
        assertEquals(32, b.getShort(72));
        assertEquals(1f, b.getFloat(76)); // qfac
        assertEquals(0.5f, b.getFloat(80));
        assertEquals(0.7f, b.getFloat(84));
        assertEquals(3.0f, b.getFloat(88));
        assertEquals(352f, b.getFloat(108)); // vox_offset
        assertEquals(1f, b.getFloat(112)); // scl_slope
        assertEquals(10, b.get(123)); // mm and s
        assertEquals(2, b.getShort(252)); // qform_code
        assertEquals(2, b.getShort(254)); // sform_code
        assertEquals(0f, b.getFloat(256));
        assertEquals(0f, b.getFloat(260));
        assertEquals(1f, b.getFloat(264)); // half turn about z: diag(-1, -1, 1)
        assertEquals(-0.5f, b.getFloat(280)); // srow_x = (-dx, 0, 0, 0)
        assertEquals(-0.7f, b.getFloat(296 + 4)); // srow_y = (0, -dy, 0, 0)
        assertEquals(3.0f, b.getFloat(312 + 8)); // srow_z = (0, 0, dz, 0)
        assertEquals("n+1\0", new String(Arrays.copyOfRange(b.array(), 344, 348), StandardCharsets.US_ASCII));
        assertEquals(0, b.getInt(348)); // no extension
    }

    @Test
    void theDataFollowTheHeaderWithWFastestAndGzipWhenAsked() throws IOException {
        float[][] volume = {{0, 1, 2, 3, 4, 5}, {6, 7, 8, 9, 10, 11}}; // 2 slices of 2 x 3
        Path gz = tmp.resolve("v.nii.gz");
        NiftiWriter.write(gz, volume, 2, 3, new double[] {1, 1, 1});
        byte[] bytes;
        try (InputStream in = new GZIPInputStream(Files.newInputStream(gz))) {
            bytes = in.readAllBytes();
        }
        assertEquals(352 + 4 * 12, bytes.length);
        ByteBuffer b = le(bytes);
        for (int i = 0; i < 12; i++) {
            assertEquals(i, b.getFloat(352 + 4 * i));
        }
        Path plain = tmp.resolve("v.nii");
        NiftiWriter.write(plain, volume, 2, 3, new double[] {1, 1, 1});
        assertArrayEquals(bytes, Files.readAllBytes(plain));
        Path forced = tmp.resolve("tmpname");
        NiftiWriter.write(forced, true, volume, 2, 3, new double[] {1, 1, 1});
        try (InputStream in = new GZIPInputStream(Files.newInputStream(forced))) {
            assertArrayEquals(bytes, in.readAllBytes());
        }
    }

    @Test
    void emptyOrOversizedVolumesAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> NiftiWriter.header(0, 2, 2, new double[] {1, 1, 1}));
        assertThrows(IllegalArgumentException.class, () -> NiftiWriter.header(1, 40000, 2, new double[] {1, 1, 1}));
        assertThrows(IllegalArgumentException.class,
                () -> NiftiWriter.write(tmp.resolve("x.nii"), new float[][] {{1, 2, 3}}, 2, 2, new double[] {1, 1, 1}));
    }
}
