package org.gleammri.client;

/** The service could not be reached (refused connection, unknown host, connection dropped). */
public class GleamConnectionException extends GleamException {
    private static final long serialVersionUID = 1L;

    public GleamConnectionException(String message, Throwable cause) {
        super(message, cause);
    }
}
