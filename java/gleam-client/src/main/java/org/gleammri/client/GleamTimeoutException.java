package org.gleammri.client;

/**
 * A timeout of the builder ran out: connecting ({@code connectTimeout}), a request waiting for its
 * answer ({@code requestTimeout}), or {@link GleamClient#await} waiting for the job ({@code
 * awaitTimeout}).
 */
public class GleamTimeoutException extends GleamException {
    private static final long serialVersionUID = 1L;

    public GleamTimeoutException(String message, Throwable cause) {
        super(message, cause);
    }
}
