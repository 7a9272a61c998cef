package org.gleammri.engine;

import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtLoggingLevel;
import ai.onnxruntime.OrtSession;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.jhdf.HdfFile;
import io.jhdf.WritableHdfFile;
import java.io.IOException;
import java.nio.FloatBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.Set;

/**
 * Runs a network written by {@code gleam export} (ONNX, opset 20) with ONNX Runtime on the CPU.
 *
 * <p>The file's contract (gleam-mri's {@code gleam_mri/onnx/graph.py}): inputs {@code kspace}
 * {@code [B, C, H, W, 2]} (float32, real and imaginary parts; the measured k-space at the file's
 * scale, zero where not measured), {@code mask} {@code [1, 1, 1, W]} (0/1 line mask), {@code maps}
 * {@code [B, C, H, W, 2]} (coil maps); output {@code image} {@code [B, H, W, 2]}, the complex image
 * at the file's scale, uncropped. The normalisation is inside the graph. Metadata
 * {@code gleam_format = gleam-mri-onnx/1}, {@code kind}, {@code model}, {@code iterations},
 * {@code config} (JSON), and others.
 *
 * <pre>{@code
 * try (GleamEngine engine = GleamEngine.load(Path.of("model.onnx"))) {
 *     List<Path> written = engine.reconstruct(Path.of("scan.h5"), Path.of("out"), Options.defaults());
 * }
 * }</pre>
 *
 * <p>An engine can reconstruct many files, one at a time (not from several threads at once).
 */
public final class GleamEngine implements AutoCloseable {
    /** The {@code gleam_format} metadata this engine reads. */
    public static final String FORMAT = "gleam-mri-onnx/1";
    /** The graph's inputs, in order. */
    public static final List<String> INPUTS = List.of("kspace", "mask", "maps");
    /** The graph's output. */
    public static final String OUTPUT = "image";

    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path path;
    private final OrtEnvironment env;
    private final OrtSession session;
    private final Map<String, String> metadata;
    private final JsonNode config;

    private GleamEngine(Path path, OrtEnvironment env, OrtSession session, Map<String, String> metadata, JsonNode config) {
        this.path = path;
        this.env = env;
        this.session = session;
        this.metadata = metadata;
        this.config = config;
    }

    /** {@link #load(Path, int)} with ONNX Runtime's default thread count. */
    public static GleamEngine load(Path model) throws GleamInputException {
        return load(model, 0);
    }

    /**
     * Opens {@code model} and checks that {@code gleam export} wrote it: its {@code gleam_format},
     * its inputs and output, a 2D network.
     *
     * @param threads ONNX Runtime's intra-op threads (0: its default)
     * @throws GleamInputException naming the file when it is missing, not a readable ONNX model,
     *     not written by gleam export, or not a 2D network
     */
    public static GleamEngine load(Path model, int threads) throws GleamInputException {
        if (!Files.isRegularFile(model)) {
            throw new GleamInputException(model, Files.isDirectory(model) ? "is a directory, not an ONNX file" : "no such ONNX file");
        }
        OrtEnvironment env;
        try {
            env = OrtEnvironment.getEnvironment(OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR, "gleam");
        } catch (RuntimeException | UnsatisfiedLinkError e) {
            throw new IllegalStateException("ONNX Runtime could not be loaded on this platform: " + e.getMessage(), e);
        }
        OrtSession session;
        try (OrtSession.SessionOptions options = new OrtSession.SessionOptions()) {
            options.setSessionLogLevel(OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR);
            if (threads > 0) {
                options.setIntraOpNumThreads(threads);
            }
            session = env.createSession(model.toString(), options);
        } catch (OrtException e) {
            throw new GleamInputException(model, "not a readable ONNX model (" + IsmrmrdHeader.oneLine(e.getMessage()) + ")", e);
        }
        try {
            Map<String, String> meta = Map.copyOf(session.getMetadata().getCustomMetadata());
            List<String> inputs = new ArrayList<>(session.getInputInfo().keySet());
            Set<String> outputs = session.getOutputInfo().keySet();
            if (!FORMAT.equals(meta.get("gleam_format")) || !inputs.equals(INPUTS) || !outputs.contains(OUTPUT)) {
                throw new GleamInputException(model, "not a network written by gleam export (format "
                        + (meta.containsKey("gleam_format") ? "'" + meta.get("gleam_format") + "'" : "none")
                        + ", inputs " + inputs + ", outputs " + outputs + "; expected format '" + FORMAT + "', inputs "
                        + INPUTS + ", output " + OUTPUT + ")");
            }
            String kind = meta.getOrDefault("kind", "");
            if (!"2d".equals(kind) || !"2".equals(meta.getOrDefault("fft_ndim", "2"))) {
                throw new GleamInputException(model, "a '" + kind + "' network; the Java engine runs 2d networks only");
            }
            JsonNode config;
            try {
                config = JSON.readTree(meta.getOrDefault("config", "{}"));
            } catch (JsonProcessingException e) {
                throw new GleamInputException(model, "its 'config' metadata is not JSON", e);
            }
            checkRank(model, session.getInputInfo(), "kspace", 5);
            checkRank(model, session.getInputInfo(), "mask", 4);
            checkRank(model, session.getInputInfo(), "maps", 5);
            return new GleamEngine(model, env, session, meta, config);
        } catch (GleamInputException e) {
            closeQuietly(session);
            throw e;
        } catch (OrtException e) {
            closeQuietly(session);
            throw new GleamInputException(model, "cannot read its metadata (" + IsmrmrdHeader.oneLine(e.getMessage()) + ")", e);
        }
    }

    private static void checkRank(Path model, Map<String, NodeInfo> inputs, String name, int rank) throws GleamInputException {
        if (inputs.get(name).getInfo() instanceof ai.onnxruntime.TensorInfo info && info.getShape().length != rank) {
            throw new GleamInputException(model, "input '" + name + "' has rank " + info.getShape().length + ", expected " + rank);
        }
    }

    private static void closeQuietly(OrtSession session) {
        try {
            session.close();
        } catch (OrtException ignored) {
            // closing a session that failed its checks: nothing to report
        }
    }

    /** The model file. */
    public Path path() {
        return path;
    }

    /** The file's metadata ({@code gleam_format}, {@code kind}, {@code model}, ...). */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** {@code 2d}. */
    public String kind() {
        return metadata.get("kind");
    }

    /** The network: {@code pgd}, {@code modl}, {@code varnet}, ... */
    public String model() {
        return metadata.getOrDefault("model", "");
    }

    /** The number of unrolled iterations, when the metadata say. */
    public OptionalInt iterations() {
        try {
            return OptionalInt.of(Integer.parseInt(metadata.getOrDefault("iterations", "")));
        } catch (NumberFormatException e) {
            return OptionalInt.empty();
        }
    }

    /** The training config (metadata {@code config}). */
    public JsonNode config() {
        return config.deepCopy();
    }

    /**
     * The complex image {@code (H, W, 2)} of one slice, at the input's scale, uncropped.
     *
     * @param kspace {@code (C, H, W, 2)}, the measured k-space, zero where not measured
     * @param mask {@code (W,)}, 0/1
     * @param maps {@code (C, H, W, 2)}
     */
    public float[] reconstructSlice(float[] kspace, float[] mask, float[] maps, int coils, int height, int width)
            throws GleamEngineException {
        long n = 2L * coils * height * width;
        if (kspace.length != n || maps.length != n || mask.length != width) {
            throw new IllegalArgumentException("kspace " + kspace.length + " and maps " + maps.length + " values (expected "
                    + n + "), mask " + mask.length + " (expected " + width + ")");
        }
        long[] shape = {1, coils, height, width, 2};
        try (OnnxTensor k = OnnxTensor.createTensor(env, FloatBuffer.wrap(kspace), shape);
                OnnxTensor m = OnnxTensor.createTensor(env, FloatBuffer.wrap(mask), new long[] {1, 1, 1, width});
                OnnxTensor s = OnnxTensor.createTensor(env, FloatBuffer.wrap(maps), shape);
                OrtSession.Result result = session.run(Map.of("kspace", k, "mask", m, "maps", s), Set.of(OUTPUT))) {
            OnnxValue value = result.get(OUTPUT).orElseThrow();
            OnnxTensor image = (OnnxTensor) value;
            long[] got = image.getInfo().getShape();
            if (!Arrays.equals(got, new long[] {1, height, width, 2})) {
                throw new GleamEngineException(path + ": the graph returned an image of shape " + Arrays.toString(got)
                        + ", expected [1, " + height + ", " + width + ", 2]", null);
            }
            FloatBuffer buffer = image.getFloatBuffer();
            float[] out = new float[buffer.remaining()];
            buffer.get(out);
            return out;
        } catch (OrtException e) {
            throw new GleamEngineException(path + ": ONNX Runtime failed: " + IsmrmrdHeader.oneLine(e.getMessage()), e);
        }
    }

    /**
     * Reconstructs every slice of {@code in} (gleam-mri's fastMRI layout, 2D, with coil maps) and
     * writes the magnitudes, cropped as {@code gleam recon} crops them, to {@code outDir}:
     * {@code <stem>.h5} (dataset {@code reconstruction} float32 {@code (S, h, w)}) and/or
     * {@code <stem>.nii.gz}. The file's {@code mask} is used when it has one, else all its
     * k-space (fully sampled, as {@code gleam recon --no-undersample}). Nothing is written unless
     * every slice was reconstructed; each output is written to a temporary file and moved in place.
     *
     * @return the files written
     * @throws GleamInputException naming {@code in} for a file the engine cannot reconstruct
     * @throws GleamEngineException when ONNX Runtime fails
     * @throws IOException when an output cannot be written
     */
    public List<Path> reconstruct(Path in, Path outDir, Options options)
            throws GleamInputException, GleamEngineException, IOException {
        float[][] volume;
        int[] size;
        IsmrmrdHeader header;
        try (FastMriFile file = FastMriFile.open(in)) {
            if (!kind().equals(file.kind())) {
                throw new GleamInputException(in, "a " + file.kind() + " file, but " + path.getFileName() + " is a "
                        + kind() + " network (kind mismatch)");
            }
            if (!file.hasMaps()) {
                throw new GleamInputException(in, "no coil maps (dataset 'maps'): the Java engine does not estimate them; "
                        + "store ESPIRiT maps with `gleam convert --maps espirit` or reconstruct with gleam recon");
            }
            int[] shape = file.kspaceShape();
            int slices = shape[0];
            int coils = shape[1];
            int height = shape[2];
            int width = shape[3];
            float[] mask = file.mask().orElseGet(() -> ones(width));
            header = file.header();
            try {
                size = ImageOps.outputSize(height, width, file.targetShape(), header);
            } catch (IllegalArgumentException e) {
                throw new GleamInputException(in, e.getMessage());
            }
            volume = new float[slices][];
            options.progress().onSlice(in, 0, slices);
            for (int s = 0; s < slices; s++) {
                float[] kspace = file.kspaceSlice(s);
                applyMask(kspace, mask, width);
                float[] maps = file.mapsSlice(s);
                float[] image = reconstructSlice(kspace, mask, maps, coils, height, width);
                float[] magnitude = ImageOps.magnitude(image);
                for (float v : magnitude) {
                    if (!Float.isFinite(v)) {
                        throw new GleamEngineException(in + ": the network's image of slice " + s + " is not finite", null);
                    }
                }
                volume[s] = ImageOps.centerCrop(magnitude, height, width, size[0], size[1]);
                options.progress().onSlice(in, s + 1, slices);
            }
        }
        return writeOutputs(volume, size[0], size[1], stem(in), outDir, options, header);
    }

    private static List<Path> writeOutputs(float[][] volume, int h, int w, String stem, Path outDir, Options options,
            IsmrmrdHeader header) throws IOException {
        Files.createDirectories(outDir);
        List<Path> written = new ArrayList<>();
        if (options.formats().contains(Format.H5)) {
            Path target = outDir.resolve(stem + ".h5");
            writeAtomically(target, tmp -> writeHdf5(tmp, volume, h, w));
            written.add(target);
        }
        if (options.formats().contains(Format.NII)) {
            Path target = outDir.resolve(stem + ".nii.gz");
            double[] voxel = header.voxelSizeMm();
            writeAtomically(target, tmp -> NiftiWriter.write(tmp, true, volume, h, w, voxel));
            written.add(target);
        }
        return written;
    }

    /** Writes {@code reconstruction} float32 {@code (S, h, w)} to a new HDF5 file. */
    static void writeHdf5(Path path, float[][] volume, int h, int w) {
        float[][][] data = new float[volume.length][h][w];
        for (int s = 0; s < volume.length; s++) {
            for (int r = 0; r < h; r++) {
                System.arraycopy(volume[s], r * w, data[s][r], 0, w);
            }
        }
        try (WritableHdfFile out = HdfFile.write(path)) {
            out.putDataset("reconstruction", data);
        }
    }

    private interface Writer {
        void write(Path tmp) throws IOException;
    }

    private static void writeAtomically(Path target, Writer writer) throws IOException {
        Path tmp = Files.createTempFile(target.toAbsolutePath().getParent(), "." + target.getFileName(), ".tmp");
        try {
            writer.write(tmp);
            Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (RuntimeException e) {
            throw new IOException(target + ": cannot write: " + e.getMessage(), e);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** The outputs' name: the file name without its last suffix ({@code scan.h5} -> {@code scan}). */
    public static String stem(Path file) {
        String name = file.getFileName().toString();
        int dot = name.lastIndexOf('.');
        return dot > 0 ? name.substring(0, dot) : name;
    }

    private static float[] ones(int n) {
        float[] out = new float[n];
        Arrays.fill(out, 1f);
        return out;
    }

    /** {@code kspace (C, H, W, 2) *= mask (W,)}: k-space where the mask is 0 is not measured. */
    static void applyMask(float[] kspace, float[] mask, int width) {
        for (int i = 0; i < kspace.length; i += 2) {
            float m = mask[(i / 2) % width];
            kspace[i] *= m;
            kspace[i + 1] *= m;
        }
    }

    @Override
    public void close() {
        closeQuietly(session);
    }
}
