package org.gleammri.client;

import com.fasterxml.jackson.annotation.JsonEnumDefaultValue;
import com.fasterxml.jackson.annotation.JsonProperty;

/** The state of a reconstruction job. */
public enum JobState {
    @JsonProperty("queued")
    QUEUED,
    @JsonProperty("running")
    RUNNING,
    @JsonProperty("done")
    DONE,
    @JsonProperty("failed")
    FAILED,
    /** A state this client does not know (a newer service); treated as not finished. */
    @JsonEnumDefaultValue
    UNKNOWN;

    /** Whether the job will not change any more ({@code done} or {@code failed}). */
    public boolean isFinished() {
        return this == DONE || this == FAILED;
    }

    @Override
    public String toString() {
        return name().toLowerCase(java.util.Locale.ROOT);
    }
}
