package org.gleammri.engine;

import io.jhdf.HdfFile;
import io.jhdf.api.Attribute;
import io.jhdf.api.Dataset;
import io.jhdf.api.Node;
import io.jhdf.object.datatype.CompoundDataType;
import io.jhdf.object.datatype.FloatingPoint;
import java.io.IOException;
import java.lang.reflect.Array;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeSet;

/**
 * A file in gleam-mri's fastMRI layout, read with jHDF (pure Java): {@code kspace} complex64
 * {@code (S, C, H, W)} (HDF5 compound of {@code r}, {@code i}, as h5py writes complex numbers),
 * {@code maps} of the same shape (optional), {@code mask} float {@code (W,)} (optional),
 * {@code reconstruction_rss} float {@code (S, h, w)} (optional), {@code ismrmrd_header} (optional)
 * and the root attribute {@code gleam_kind} ({@code 2d} when absent). 3D and cine files
 * ({@code (S, C, Z|T, H, W)}) are recognised, so that their kind can be refused, but not read.
 *
 * <p>{@link #open} validates the layout as gleam-mri's {@code inspect_fastmri} does and reads no
 * array data but the mask; every problem is a {@link GleamInputException} naming the file.
 */
public final class FastMriFile implements AutoCloseable {
    /** The kinds of file gleam-mri writes. */
    public static final List<String> KINDS = List.of("2d", "3d", "cine");

    private final Path path;
    private final HdfFile hdf;
    private final String kind;
    private final int[] shape;
    private final Dataset kspace;
    private final Dataset maps;
    private final float[] mask;
    private final int[] targetShape;
    private final IsmrmrdHeader header;

    private FastMriFile(Path path, HdfFile hdf, String kind, int[] shape, Dataset kspace, Dataset maps,
            float[] mask, int[] targetShape, IsmrmrdHeader header) {
        this.path = path;
        this.hdf = hdf;
        this.kind = kind;
        this.shape = shape;
        this.kspace = kspace;
        this.maps = maps;
        this.mask = mask;
        this.targetShape = targetShape;
        this.header = header;
    }

    /**
     * Opens and validates {@code path}.
     *
     * @throws GleamInputException when it is missing, not HDF5, truncated or corrupt, has no
     *     {@code kspace}, or a dataset of the wrong type or shape
     */
    public static FastMriFile open(Path path) throws GleamInputException {
        if (Files.isDirectory(path)) {
            throw new GleamInputException(path, "is a directory, not an HDF5 file");
        }
        if (!Files.isReadable(path)) {
            throw new GleamInputException(path, Files.exists(path) ? "not readable" : "file not found");
        }
        HdfFile hdf;
        try {
            hdf = new HdfFile(path);
        } catch (RuntimeException e) {
            throw unreadable(path, e);
        }
        try {
            checkEndOfFile(path, hdf);
            return validate(path, hdf);
        } catch (GleamInputException e) {
            hdf.close();
            throw e;
        } catch (RuntimeException e) {
            hdf.close();
            throw unreadable(path, e);
        }
    }

    /** As libhdf5: a file shorter than the end-of-file address its superblock stores is truncated. */
    private static void checkEndOfFile(Path path, HdfFile hdf) throws GleamInputException {
        long stored = hdf.getHdfBackingStorage().getSuperblock().getEndOfFileAddress();
        long base = hdf.getHdfBackingStorage().getSuperblock().getBaseAddressByte();
        long size;
        try {
            size = Files.size(path);
        } catch (IOException e) {
            throw new GleamInputException(path, "cannot read its size: " + e.getMessage(), e);
        }
        if (stored > 0 && base + stored > size) {
            throw new GleamInputException(path, "truncated HDF5 file: " + size + " bytes, its superblock says "
                    + (base + stored));
        }
    }

    private static GleamInputException unreadable(Path path, RuntimeException e) {
        String detail = IsmrmrdHeader.oneLine(e.getMessage());
        return new GleamInputException(path, "not a readable HDF5 file (not HDF5, truncated or corrupt)"
                + (detail.isEmpty() ? "" : ": " + detail), e);
    }

    private static FastMriFile validate(Path path, HdfFile hdf) throws GleamInputException {
        Dataset kspace = dataset(hdf, "kspace", path);
        if (kspace == null) {
            throw new GleamInputException(path, "no 'kspace' dataset (found " + new TreeSet<>(hdf.getChildren().keySet()) + ")");
        }
        String kind = "2d";
        Attribute kindAttr = hdf.getAttribute("gleam_kind");
        if (kindAttr != null) {
            Object value = kindAttr.getData();
            kind = value instanceof String s ? s : String.valueOf(value);
            if (!KINDS.contains(kind)) {
                throw new GleamInputException(path, "unknown kind '" + kind + "' (attribute gleam_kind); expected one of " + KINDS);
            }
        }
        requireComplex(kspace, "kspace", path);
        int[] shape = kspace.getDimensions();
        int rank = "2d".equals(kind) ? 4 : 5;
        if (shape.length != rank) {
            String names = switch (kind) {
                case "2d" -> "(slices, coils, H, W)";
                case "3d" -> "(slabs, coils, Z, H, W)";
                default -> "(slices, coils, T, H, W)";
            };
            throw new GleamInputException(path, "kspace of a " + kind + " file must be " + names + ", got shape "
                    + Arrays.toString(shape));
        }
        if (Arrays.stream(shape).anyMatch(n -> n < 1)) {
            throw new GleamInputException(path, "kspace has an empty axis: shape " + Arrays.toString(shape));
        }
        long perSlice = 2L * Arrays.stream(shape, 1, shape.length).asLongStream().reduce(1, (a, b) -> a * b);
        if (perSlice > Integer.MAX_VALUE - 64) {
            throw new GleamInputException(path, "kspace slices of shape " + Arrays.toString(Arrays.copyOfRange(shape, 1, shape.length))
                    + " are too large to read");
        }
        Dataset maps = dataset(hdf, "maps", path);
        if (maps != null) {
            requireComplex(maps, "maps", path);
            if (!Arrays.equals(maps.getDimensions(), shape)) {
                throw new GleamInputException(path, "maps shape " + Arrays.toString(maps.getDimensions())
                        + " != kspace shape " + Arrays.toString(shape));
            }
        }
        int[] targetShape = null;
        Dataset target = dataset(hdf, "reconstruction_rss", path);
        if (target != null) {
            requireReal(target, "reconstruction_rss", path);
            int[] t = target.getDimensions();
            if (t.length != shape.length - 1) {
                throw new GleamInputException(path, "reconstruction_rss must have rank " + (shape.length - 1) + ", got shape "
                        + Arrays.toString(t));
            }
            for (int axis = 0; axis < t.length - 2; axis++) {
                int k = axis == 0 ? shape[0] : shape[axis + 1];
                if (t[axis] != k) {
                    throw new GleamInputException(path, "reconstruction_rss shape " + Arrays.toString(t) + " does not match kspace "
                            + Arrays.toString(shape) + " (slice count and Z/T axis must agree)");
                }
            }
            targetShape = new int[] {t[t.length - 2], t[t.length - 1]};
        }
        float[] mask = null;
        Dataset maskSet = dataset(hdf, "mask", path);
        if (maskSet != null) {
            requireReal(maskSet, "mask", path);
            int[] m = maskSet.getDimensions();
            int width = shape[shape.length - 1];
            boolean ok = m.length == 1 && m[0] == width
                    || !"2d".equals(kind) && m.length == 2 && m[0] == shape[2] && m[1] == width;
            if (!ok) {
                throw new GleamInputException(path, "mask shape " + Arrays.toString(m) + " does not fit kspace "
                        + Arrays.toString(shape) + "; expected [" + width + "]");
            }
            if (m.length == 1) {
                mask = new float[width];
                flatten(maskSet.getData(), mask, 0, 1, new int[] {0});
                for (float v : mask) {
                    if (!Float.isFinite(v)) {
                        throw new GleamInputException(path, "mask contains NaN or Inf values");
                    }
                }
            }
        }
        IsmrmrdHeader header = IsmrmrdHeader.empty();
        Dataset headerSet = dataset(hdf, "ismrmrd_header", path);
        if (headerSet != null) {
            Object value = headerSet.getData();
            if (value instanceof String s) {
                header = IsmrmrdHeader.parse(s, path);
            } else if (value instanceof String[] array && array.length == 1) {
                header = IsmrmrdHeader.parse(array[0], path);
            } else {
                throw new GleamInputException(path, "ismrmrd_header is not a string but " + headerSet.getJavaType().getSimpleName());
            }
        }
        checkStorage(path, hdf, kspace, maps, target);
        return new FastMriFile(path, hdf, kind, shape, kspace, maps, mask, targetShape, header);
    }

    /** A file shorter than its contiguous datasets claim is truncated: say so before reading. */
    private static void checkStorage(Path path, HdfFile hdf, Dataset... datasets) throws GleamInputException {
        long size;
        try {
            size = Files.size(path);
        } catch (IOException e) {
            throw new GleamInputException(path, "cannot read its size: " + e.getMessage(), e);
        }
        long claimed = 0;
        for (Dataset ds : datasets) {
            if (ds != null && ds.getDataLayout() == io.jhdf.object.message.DataLayout.CONTIGUOUS) {
                claimed += ds.getSizeInBytes();
            }
        }
        if (claimed > size) {
            throw new GleamInputException(path, "truncated HDF5 file: its datasets hold " + claimed
                    + " bytes, the file has " + size);
        }
    }

    private static Dataset dataset(HdfFile hdf, String name, Path path) throws GleamInputException {
        Node node = hdf.getChildren().get(name);
        if (node == null) {
            return null;
        }
        if (!(node instanceof Dataset ds)) {
            throw new GleamInputException(path, "'" + name + "' is a " + node.getType().toString().toLowerCase(java.util.Locale.ROOT)
                    + ", not a dataset");
        }
        return ds;
    }

    private static void requireComplex(Dataset ds, String name, Path path) throws GleamInputException {
        boolean ok = ds.isCompound() && ds.getDataType() instanceof CompoundDataType type
                && type.getMembers().size() == 2
                && type.getMembers().stream().allMatch(m -> m.getDataType() instanceof FloatingPoint);
        if (!ok) {
            throw new GleamInputException(path, name + " must be complex (complex64: an HDF5 compound of two floats r, i), got "
                    + ds.getDataType().getClass().getSimpleName() + " " + ds.getJavaType().getSimpleName());
        }
    }

    private static void requireReal(Dataset ds, String name, Path path) throws GleamInputException {
        Class<?> type = ds.getJavaType();
        boolean ok = type == float.class || type == double.class || type == int.class || type == long.class
                || type == short.class || type == byte.class;
        if (ds.isCompound() || !ok) {
            throw new GleamInputException(path, name + " must be real, got " + ds.getDataType().getClass().getSimpleName());
        }
    }

    /** The file. */
    public Path path() {
        return path;
    }

    /** {@code 2d}, {@code 3d} or {@code cine} (attribute {@code gleam_kind}). */
    public String kind() {
        return kind;
    }

    /** The shape of {@code kspace}: {@code (S, C, H, W)} in 2D. */
    public int[] kspaceShape() {
        return shape.clone();
    }

    /** The number of slices S. */
    public int slices() {
        return shape[0];
    }

    /** Whether the file holds coil maps. */
    public boolean hasMaps() {
        return maps != null;
    }

    /** The line mask {@code (W,)}, or empty: a fully sampled file. */
    public Optional<float[]> mask() {
        return Optional.ofNullable(mask).map(float[]::clone);
    }

    /** {@code (h, w)} of {@code reconstruction_rss}, or empty. */
    public Optional<int[]> targetShape() {
        return Optional.ofNullable(targetShape).map(int[]::clone);
    }

    /** The header's fields (empty without {@code ismrmrd_header}). */
    public IsmrmrdHeader header() {
        return header;
    }

    /**
     * Slice {@code s} of {@code kspace} as interleaved float32 {@code (C, H, W, 2)}.
     *
     * @throws GleamInputException when the data cannot be read (truncated, corrupt) or is not finite
     */
    public float[] kspaceSlice(int s) throws GleamInputException {
        return complexSlice(kspace, "kspace", s);
    }

    /** Slice {@code s} of {@code maps}, as {@link #kspaceSlice}; the file must have maps. */
    public float[] mapsSlice(int s) throws GleamInputException {
        if (maps == null) {
            throw new GleamInputException(path, "no 'maps' dataset");
        }
        return complexSlice(maps, "maps", s);
    }

    private float[] complexSlice(Dataset ds, String name, int s) throws GleamInputException {
        int[] count = shape.clone();
        count[0] = 1;
        long[] offset = new long[shape.length];
        offset[0] = s;
        int n = 1;
        for (int i = 1; i < shape.length; i++) {
            n *= shape[i];
        }
        float[] out = new float[2 * n];
        try {
            Object data = ds.getData(offset, count);
            if (!(data instanceof Map<?, ?> members) || members.size() != 2) {
                throw new GleamInputException(path, name + " did not read as a complex compound");
            }
            Object[] parts = parts(members);
            int[] written = {0};
            flatten(parts[0], out, 0, 2, written);
            if (written[0] != n) {
                throw new GleamInputException(path, name + " slice " + s + " read " + written[0] + " values, expected " + n);
            }
            written[0] = 0;
            flatten(parts[1], out, 1, 2, written);
        } catch (GleamInputException e) {
            throw e;
        } catch (RuntimeException e) {
            String detail = IsmrmrdHeader.oneLine(e.getMessage());
            throw new GleamInputException(path, "corrupt or truncated HDF5 data in " + name + " (slice " + s + ")"
                + (detail.isEmpty() ? "" : ": " + detail), e);
        }
        for (float v : out) {
            if (!Float.isFinite(v)) {
                throw new GleamInputException(path, name + " contains NaN or Inf values (slice " + s + ")");
            }
        }
        return out;
    }

    /** The real and imaginary members: {@code r, i} (h5py), {@code real, imag}, else in file order. */
    private static Object[] parts(Map<?, ?> members) {
        for (String[] names : new String[][] {{"r", "i"}, {"real", "imag"}}) {
            if (members.containsKey(names[0]) && members.containsKey(names[1])) {
                return new Object[] {members.get(names[0]), members.get(names[1])};
            }
        }
        return members.values().toArray();
    }

    /** Copies the scalars of a (nested) primitive array to {@code out[start + k * stride]}. */
    private static void flatten(Object array, float[] out, int start, int stride, int[] count) {
        if (array instanceof float[] f) {
            for (float v : f) {
                out[start + stride * count[0]++] = v;
            }
        } else if (array instanceof double[] d) {
            for (double v : d) {
                out[start + stride * count[0]++] = (float) v;
            }
        } else if (array instanceof Object[] nested) {
            for (Object item : nested) {
                flatten(item, out, start, stride, count);
            }
        } else if (array != null && array.getClass().isArray()) {
            int length = Array.getLength(array);
            for (int i = 0; i < length; i++) {
                out[start + stride * count[0]++] = ((Number) Array.get(array, i)).floatValue();
            }
        } else if (array instanceof Number number) {
            out[start + stride * count[0]++] = number.floatValue();
        } else {
            throw new IllegalStateException("unexpected HDF5 data of type " + (array == null ? "null" : array.getClass().getName()));
        }
    }

    @Override
    public void close() {
        hdf.close();
    }

    @Override
    public String toString() {
        return path + " (" + kind + ", kspace " + Arrays.toString(shape) + ")";
    }
}
