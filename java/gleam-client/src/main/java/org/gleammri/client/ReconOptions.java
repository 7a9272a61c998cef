package org.gleammri.client;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collections;
import java.util.EnumSet;
import java.util.Optional;
import java.util.Set;

/**
 * What to ask of a reconstruction: the model, the output formats, whether to undersample fully
 * sampled uploads, and the BART {@code .hdr} of a {@code .cfl} upload. Immutable; each method
 * returns a changed copy.
 *
 * <pre>{@code
 * ReconOptions options = ReconOptions.defaults().model("demo").formats(Format.H5, Format.NII);
 * }</pre>
 */
public final class ReconOptions {
    private final String model;
    private final Set<Format> formats;
    private final boolean undersample;
    private final Path header;

    private ReconOptions(String model, Set<Format> formats, boolean undersample, Path header) {
        this.model = model;
        this.formats = Collections.unmodifiableSet(EnumSet.copyOf(formats));
        this.undersample = undersample;
        this.header = header;
    }

    /** The service's defaults: its only model, {@code h5}, undersampling on (as {@code gleam recon}). */
    public static ReconOptions defaults() {
        return new ReconOptions(null, EnumSet.of(Format.H5), true, null);
    }

    /** The model to run, a name from {@link GleamClient#models()}; needed when several are loaded. */
    public ReconOptions model(String name) {
        return new ReconOptions(name, formats, undersample, header);
    }

    /** The output formats (at least one). */
    public ReconOptions formats(Format... wanted) {
        return formats(EnumSet.copyOf(Arrays.asList(wanted)));
    }

    /** The output formats (at least one). */
    public ReconOptions formats(Set<Format> wanted) {
        if (wanted.isEmpty()) {
            throw new IllegalArgumentException("at least one output format is needed");
        }
        return new ReconOptions(model, wanted, undersample, header);
    }

    /**
     * Whether fully sampled uploads are undersampled with the model's training mask ({@code true},
     * the default), or reconstructed from all their k-space ({@code gleam recon --no-undersample}).
     */
    public ReconOptions undersample(boolean on) {
        return new ReconOptions(model, formats, on, header);
    }

    /**
     * The BART {@code .hdr} belonging to a {@code .cfl} upload. Without it, the {@code .hdr} beside
     * the {@code .cfl} (same stem) is sent when it exists.
     */
    public ReconOptions header(Path hdr) {
        return new ReconOptions(model, formats, undersample, hdr);
    }

    public Optional<String> model() {
        return Optional.ofNullable(model);
    }

    /** The formats, in the order h5, nii, png, dcm. */
    public Set<Format> formats() {
        return formats;
    }

    public boolean undersample() {
        return undersample;
    }

    public Optional<Path> header() {
        return Optional.ofNullable(header);
    }

    @Override
    public String toString() {
        return "ReconOptions[model=" + model + ", formats=" + formats + ", undersample="
                + undersample + ", header=" + header + "]";
    }
}
