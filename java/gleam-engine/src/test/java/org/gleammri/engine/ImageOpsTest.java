package org.gleammri.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class ImageOpsTest {
    private static float[] range(int n) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = i;
        }
        return out;
    }

    @Test
    void centerCropStartsAtHalfTheDifferenceRoundedDown() {
        // 5 x 4 image, values = row * 4 + column; crop to 2 x 3: rows 1..2 ((5-2)/2 = 1), columns 0..2 ((4-3)/2 = 0)
        float[] crop = ImageOps.centerCrop(range(20), 5, 4, 2, 3);
        assertArrayEquals(new float[] {4, 5, 6, 8, 9, 10}, crop);
        // even sizes: 4 x 4 to 2 x 2 is rows and columns 1..2
        assertArrayEquals(new float[] {5, 6, 9, 10}, ImageOps.centerCrop(range(16), 4, 4, 2, 2));
        assertArrayEquals(range(16), ImageOps.centerCrop(range(16), 4, 4, 4, 4));
        assertThrows(IllegalArgumentException.class, () -> ImageOps.centerCrop(range(16), 4, 4, 5, 2));
        assertThrows(IllegalArgumentException.class, () -> ImageOps.centerCrop(range(15), 4, 4, 2, 2));
    }

    @Test
    void outputSizeIsTheTargetsElseTheHeadersReconSizeElseTheImages() {
        IsmrmrdHeader recon = new IsmrmrdHeader(Optional.empty(), Optional.of(new int[] {32, 24, 1}),
                Optional.empty(), Optional.empty());
        assertArrayEquals(new int[] {30, 20}, ImageOps.outputSize(40, 32, Optional.of(new int[] {30, 20}), recon));
        assertArrayEquals(new int[] {32, 24}, ImageOps.outputSize(40, 32, Optional.empty(), recon));
        // a recon size larger than the image is ignored, as gleam recon ignores it
        assertArrayEquals(new int[] {20, 20}, ImageOps.outputSize(20, 20, Optional.empty(), recon));
        assertArrayEquals(new int[] {40, 32}, ImageOps.outputSize(40, 32, Optional.empty(), IsmrmrdHeader.empty()));
        // a target larger than the image is an error
        assertThrows(IllegalArgumentException.class,
                () -> ImageOps.outputSize(20, 20, Optional.of(new int[] {30, 20}), recon));
    }

    @Test
    void magnitudeOfInterleavedComplex() {
        assertArrayEquals(new float[] {5, 0, 1}, ImageOps.magnitude(new float[] {3, 4, 0, 0, 0, -1}));
    }

    @Test
    void theMaskZeroesUnmeasuredLinesOfEveryCoilAndRow() {
        float[] kspace = new float[2 * 2 * 3 * 2]; // (C=2, H=2, W=3, 2)
        java.util.Arrays.fill(kspace, 1f);
        GleamEngine.applyMask(kspace, new float[] {1, 0, 1}, 3);
        for (int i = 0; i < kspace.length; i += 2) {
            float expected = (i / 2) % 3 == 1 ? 0f : 1f;
            assertEquals(expected, kspace[i]);
            assertEquals(expected, kspace[i + 1]);
        }
    }

    @Test
    void headersAreParsedWithAnyNamespacePrefixAndGiveVoxelSizes() throws GleamInputException {
        String xml = """
                <?xml version='1.0' encoding='utf-8'?>
                <ns0:ismrmrdHeader xmlns:ns0="http://www.ismrm.org/ISMRMRD"><ns0:encoding>
                <ns0:encodedSpace><ns0:matrixSize><ns0:x>640</ns0:x><ns0:y>368</ns0:y><ns0:z>1</ns0:z></ns0:matrixSize>
                <ns0:fieldOfView_mm><ns0:x>280</ns0:x><ns0:y>184</ns0:y><ns0:z>4.5</ns0:z></ns0:fieldOfView_mm></ns0:encodedSpace>
                <ns0:reconSpace><ns0:matrixSize><ns0:x>320</ns0:x><ns0:y>320</ns0:y><ns0:z>1</ns0:z></ns0:matrixSize>
                <ns0:fieldOfView_mm><ns0:x>140</ns0:x><ns0:y>160</ns0:y><ns0:z>3</ns0:z></ns0:fieldOfView_mm></ns0:reconSpace>
                </ns0:encoding></ns0:ismrmrdHeader>""";
        IsmrmrdHeader header = IsmrmrdHeader.parse(xml, Path.of("f.h5"));
        assertArrayEquals(new int[] {320, 320, 1}, header.reconSize().orElseThrow());
        assertArrayEquals(new int[] {640, 368, 1}, header.encodingSize().orElseThrow());
        // dx along W = fov_y / n_y, dy along H = fov_x / n_x, dz = fov_z / n_z
        assertArrayEquals(new double[] {0.5, 0.4375, 3.0}, header.voxelSizeMm(), 1e-12);
        assertArrayEquals(new double[] {1, 1, 1}, IsmrmrdHeader.empty().voxelSizeMm());
    }

    @Test
    void malformedHeadersNameTheFile() {
        Path file = Path.of("broken.h5");
        GleamInputException e = assertThrows(GleamInputException.class, () -> IsmrmrdHeader.parse("<ismrmrdHeader><oops>", file));
        assertEquals(file, e.file());
        assertTrue(e.getMessage().startsWith("broken.h5: ISMRMRD header is not well-formed XML"), e.getMessage());
        e = assertThrows(GleamInputException.class, () -> IsmrmrdHeader.parse("<other/>", file));
        assertTrue(e.getMessage().contains("expected <ismrmrdHeader>"), e.getMessage());
        e = assertThrows(GleamInputException.class, () -> IsmrmrdHeader.parse("""
                <ismrmrdHeader><encoding><reconSpace><matrixSize><x>a</x><y>1</y><z>1</z></matrixSize>
                </reconSpace></encoding></ismrmrdHeader>""", file));
        assertTrue(e.getMessage().contains("not an integer"), e.getMessage());
    }

    @Test
    void stemDropsTheLastSuffix() {
        assertEquals("file1000", GleamEngine.stem(Path.of("/data/file1000.h5")));
        assertEquals("a.b", GleamEngine.stem(Path.of("a.b.h5")));
        assertEquals("plain", GleamEngine.stem(Path.of("plain")));
        assertEquals(".hidden", GleamEngine.stem(Path.of(".hidden")));
    }
}
