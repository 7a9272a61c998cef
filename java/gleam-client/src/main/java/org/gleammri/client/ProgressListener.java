package org.gleammri.client;

/**
 * Told about a job while {@link GleamClient#await} waits for it: once at the first poll, then each
 * time its state or progress changes.
 */
@FunctionalInterface
public interface ProgressListener {
    /** A listener that ignores everything. */
    ProgressListener NONE = job -> {};

    void onProgress(Job job);
}
