package org.gleammri.client;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;
import java.time.OffsetDateTime;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A reconstruction job as the service reports it ({@code POST} and {@code GET /v1/reconstructions}).
 *
 * <p>Times are the service's ISO 8601 strings ({@code null} until they happen); {@link
 * #createdTime()} and friends parse them.
 */
@JsonIgnoreProperties(ignoreUnknown = true)
public record Job(
        @JsonProperty("id") String id,
        @JsonProperty("state") JobState state,
        @JsonProperty("model") String model,
        @JsonProperty("file_name") String fileName,
        @JsonProperty("formats") List<String> formats,
        @JsonProperty("undersample") Boolean undersample,
        @JsonProperty("progress") Progress progress,
        @JsonProperty("created_at") String createdAt,
        @JsonProperty("started_at") String startedAt,
        @JsonProperty("finished_at") String finishedAt,
        @JsonProperty("timings") Map<String, Double> timings,
        @JsonProperty("error") String error) {

    /**
     * Slices (or frames) reconstructed so far.
     *
     * @param done slices finished
     * @param total slices in the file; {@code 0} until the file has been opened
     */
    @JsonIgnoreProperties(ignoreUnknown = true)
    public record Progress(@JsonProperty("done") int done, @JsonProperty("total") int total) {}

    /** {@code progress}, never {@code null} ({@code 0/0} when the service sent none). */
    public Progress progressOrZero() {
        return progress == null ? new Progress(0, 0) : progress;
    }

    /** {@code timings.get(key)} in seconds, when present ({@code queued_s}, {@code running_s}). */
    public Optional<Double> timing(String key) {
        return timings == null ? Optional.empty() : Optional.ofNullable(timings.get(key));
    }

    /** {@code created_at}, parsed. */
    public Optional<OffsetDateTime> createdTime() {
        return parse(createdAt);
    }

    /** {@code started_at}, parsed; empty while queued. */
    public Optional<OffsetDateTime> startedTime() {
        return parse(startedAt);
    }

    /** {@code finished_at}, parsed; empty until done or failed. */
    public Optional<OffsetDateTime> finishedTime() {
        return parse(finishedAt);
    }

    private static Optional<OffsetDateTime> parse(String time) {
        return time == null ? Optional.empty() : Optional.of(OffsetDateTime.parse(time));
    }
}
