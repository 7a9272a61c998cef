package org.gleammri.engine;

import java.util.EnumSet;
import java.util.Objects;
import java.util.Set;

/**
 * Options of {@link GleamEngine#reconstruct}: the output formats (default {@code h5} and
 * {@code nii}) and a progress listener (default none). Immutable; {@code with*} return copies.
 */
public final class Options {
    private final Set<Format> formats;
    private final ProgressListener progress;

    private Options(Set<Format> formats, ProgressListener progress) {
        if (formats.isEmpty()) {
            throw new IllegalArgumentException("at least one output format is needed");
        }
        this.formats = Set.copyOf(formats);
        this.progress = Objects.requireNonNull(progress, "progress");
    }

    /** {@code h5} and {@code nii}, no progress. */
    public static Options defaults() {
        return new Options(EnumSet.of(Format.H5, Format.NII), ProgressListener.none());
    }

    /** These options writing {@code formats} (not empty). */
    public Options withFormats(Set<Format> formats) {
        return new Options(formats, progress);
    }

    /** These options reporting to {@code progress}. */
    public Options withProgress(ProgressListener progress) {
        return new Options(formats, progress);
    }

    /** The output formats. */
    public Set<Format> formats() {
        return formats;
    }

    /** The progress listener. */
    public ProgressListener progress() {
        return progress;
    }
}
