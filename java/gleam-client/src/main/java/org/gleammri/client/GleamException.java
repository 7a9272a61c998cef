package org.gleammri.client;

import java.io.IOException;

/**
 * Anything that went wrong talking to the service. The subclasses say what: {@link
 * GleamApiException} (the service answered with an error and its {@code detail}), {@link
 * JobFailedException}, {@link GleamConnectionException}, {@link GleamTimeoutException}.
 */
public class GleamException extends IOException {
    private static final long serialVersionUID = 1L;

    public GleamException(String message) {
        super(message);
    }

    public GleamException(String message, Throwable cause) {
        super(message, cause);
    }
}
