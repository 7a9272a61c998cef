package org.gleammri.engine;

import java.nio.file.Path;

/** Told of each slice reconstructed: {@code done} of {@code total} slices of {@code file}. */
@FunctionalInterface
public interface ProgressListener {
    /** Called once the file is open ({@code done} 0) and after every slice. */
    void onSlice(Path file, int done, int total);

    /** A listener that ignores everything. */
    static ProgressListener none() {
        return (file, done, total) -> { };
    }
}
