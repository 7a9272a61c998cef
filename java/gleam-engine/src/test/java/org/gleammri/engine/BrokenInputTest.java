package org.gleammri.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jhdf.HdfFile;
import io.jhdf.WritableHdfFile;
import io.jhdf.api.Dataset;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Files that are not what the engine reads: each refused with a message naming the file. */
class BrokenInputTest {
    @TempDir
    Path tmp;

    private GleamInputException refused(Path file) {
        GleamInputException e = assertThrows(GleamInputException.class, () -> FastMriFile.open(file).close());
        assertEquals(file, e.file());
        assertTrue(e.getMessage().startsWith(file + ": "), e.getMessage());
        assertTrue(!e.getMessage().contains("\n"), "one line: " + e.getMessage());
        return e;
    }

    private Path hdf5(String name, String dataset, Object data, String kind) {
        Path file = tmp.resolve(name);
        try (WritableHdfFile out = HdfFile.write(file)) {
            out.putDataset(dataset, data);
            if (kind != null) {
                out.putAttribute("gleam_kind", kind);
            }
        }
        return file;
    }

    @Test
    void missingFilesAndFolders() {
        assertTrue(refused(tmp.resolve("absent.h5")).problem().contains("file not found"));
        assertTrue(refused(tmp).problem().contains("is a directory"));
    }

    @Test
    void notHdf5() throws IOException {
        Path file = tmp.resolve("notes.h5");
        Files.writeString(file, "not an HDF5 file at all, just some text long enough to hold a superblock");
        assertTrue(refused(file).problem().startsWith("not a readable HDF5 file"));
        Path empty = tmp.resolve("empty.h5");
        Files.write(empty, new byte[0]);
        assertTrue(refused(empty).problem().startsWith("not a readable HDF5 file"));
    }

    @Test
    void truncatedHdf5() throws IOException {
        Path whole = hdf5("whole.h5", "kspace", new float[4][8][8][8], null);
        byte[] bytes = Files.readAllBytes(whole);
        for (int keep : new int[] {bytes.length - 1, bytes.length / 2, 200, 40}) {
            Path cut = tmp.resolve("cut" + keep + ".h5");
            Files.write(cut, Arrays.copyOf(bytes, keep));
            String problem = refused(cut).problem();
            assertTrue(problem.startsWith("truncated HDF5 file") || problem.startsWith("not a readable HDF5 file"), problem);
        }
    }

    @Test
    void missingOrRealKspace() {
        assertTrue(refused(hdf5("nok.h5", "mask", new float[8], null)).problem().startsWith("no 'kspace' dataset (found [mask])"));
        String problem = refused(hdf5("real.h5", "kspace", new float[1][2][4][4], null)).problem();
        assertTrue(problem.startsWith("kspace must be complex"), problem);
    }

    @Test
    void unknownKind() {
        String problem = refused(hdf5("kind.h5", "kspace", new float[1][2][4][4], "4d")).problem();
        assertTrue(problem.startsWith("unknown kind '4d'"), problem);
    }

    @Test
    void theReconstructionDatasetIsFloat32SliceHeightWidth() {
        Path file = tmp.resolve("out.h5");
        float[][] volume = {{1, 2, 3, 4, 5, 6}, {7, 8, 9, 10, 11, 12}};
        GleamEngine.writeHdf5(file, volume, 2, 3);
        try (HdfFile in = new HdfFile(file)) {
            Dataset ds = in.getDatasetByPath("reconstruction");
            assertArrayEquals(new int[] {2, 2, 3}, ds.getDimensions());
            assertEquals(float.class, ds.getJavaType());
            float[][][] data = (float[][][]) ds.getData();
            assertEquals(12f, data[1][1][2]);
            assertEquals(4f, data[0][1][0]);
        }
    }

    @Test
    void modelsThatAreMissingOrNotOnnx() throws IOException {
        Path absent = tmp.resolve("absent.onnx");
        GleamInputException e = assertThrows(GleamInputException.class, () -> GleamEngine.load(absent));
        assertEquals(absent + ": no such ONNX file", e.getMessage());
        Path garbage = tmp.resolve("garbage.onnx");
        Files.writeString(garbage, "not a model");
        e = assertThrows(GleamInputException.class, () -> GleamEngine.load(garbage));
        assertTrue(e.getMessage().startsWith(garbage + ": not a readable ONNX model"), e.getMessage());
    }
}
