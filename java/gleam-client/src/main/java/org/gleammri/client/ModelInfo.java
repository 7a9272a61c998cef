package org.gleammri.client;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;

/**
 * A model the service has loaded ({@code GET /v1/models}).
 *
 * @param name the name to pass as {@link ReconOptions#model(String)}
 * @param kind {@code 2d}, {@code 3d} or {@code cine}
 * @param model the network ({@code pgd}, {@code modl}, ...)
 * @param strategy the training strategy ({@code greedy}, ...)
 * @param iterations unrolled iterations
 * @param acceleration that of the checkpoint's training mask; {@code null} when unknown
 * @param device where the service runs it ({@code cpu}, {@code cuda:0}, ...)
 */
@JsonIgnoreProperties(ignoreUnknown = true)
public record ModelInfo(
        @JsonProperty("name") String name,
        @JsonProperty("kind") String kind,
        @JsonProperty("model") String model,
        @JsonProperty("strategy") String strategy,
        @JsonProperty("iterations") Integer iterations,
        @JsonProperty("acceleration") Double acceleration,
        @JsonProperty("device") String device) {}
