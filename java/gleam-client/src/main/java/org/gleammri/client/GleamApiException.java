package org.gleammri.client;

import java.util.Optional;

/**
 * The service answered with an error status. {@link #detail()} is the service's own message (the
 * {@code detail} of its JSON body); {@link #getMessage()} adds the status and the request.
 *
 * <p>{@link #of} picks the subclass for the status: 400 {@link BadRequestException}, 401 {@link
 * UnauthorizedException}, 404 {@link NotFoundException}, 409 {@link ConflictException}, 413 {@link
 * PayloadTooLargeException}, 429 {@link QueueFullException}, 5xx {@link ServerErrorException}.
 */
public class GleamApiException extends GleamException {
    private static final long serialVersionUID = 1L;

    private final int status;
    private final String detail;
    private final String request;

    public GleamApiException(int status, String detail, String request) {
        super(request + ": HTTP " + status + ": " + detail);
        this.status = status;
        this.detail = detail;
        this.request = request;
    }

    /** The HTTP status. */
    public int status() {
        return status;
    }

    /** The service's message ({@code detail}), or a description of the body when it had none. */
    public String detail() {
        return detail;
    }

    /** The request, as {@code METHOD path}. */
    public String request() {
        return request;
    }

    /** The exception for {@code status}. */
    public static GleamApiException of(int status, String detail, String request, Optional<String> retryAfter) {
        return switch (status) {
            case 400 -> new BadRequestException(detail, request);
            case 401 -> new UnauthorizedException(detail, request);
            case 404 -> new NotFoundException(detail, request);
            case 409 -> new ConflictException(detail, request);
            case 413 -> new PayloadTooLargeException(detail, request);
            case 429 -> new QueueFullException(detail, request, retryAfter.orElse(null));
            default -> status >= 500
                    ? new ServerErrorException(status, detail, request)
                    : new GleamApiException(status, detail, request);
        };
    }

    /** 400: unknown model, unknown format, empty file, missing {@code .hdr}, ... */
    public static class BadRequestException extends GleamApiException {
        private static final long serialVersionUID = 1L;

        public BadRequestException(String detail, String request) {
            super(400, detail, request);
        }
    }

    /** 401: the service needs a token and the one sent (if any) is not it. */
    public static class UnauthorizedException extends GleamApiException {
        private static final long serialVersionUID = 1L;

        public UnauthorizedException(String detail, String request) {
            super(401, detail, request);
        }
    }

    /** 404: no such job (or route). */
    public static class NotFoundException extends GleamApiException {
        private static final long serialVersionUID = 1L;

        public NotFoundException(String detail, String request) {
            super(404, detail, request);
        }
    }

    /** 409: a result asked for while the job is not done (for a failed job, with its error). */
    public static class ConflictException extends GleamApiException {
        private static final long serialVersionUID = 1L;

        public ConflictException(String detail, String request) {
            super(409, detail, request);
        }
    }

    /** 413: the upload is larger than the service's {@code --max-upload-mb}. */
    public static class PayloadTooLargeException extends GleamApiException {
        private static final long serialVersionUID = 1L;

        public PayloadTooLargeException(String detail, String request) {
            super(413, detail, request);
        }
    }

    /** 429: the service's queue is full; try again later. */
    public static class QueueFullException extends GleamApiException {
        private static final long serialVersionUID = 1L;

        private final String retryAfter;

        public QueueFullException(String detail, String request, String retryAfter) {
            super(429, detail, request);
            this.retryAfter = retryAfter;
        }

        /** The {@code Retry-After} header, when the service (or a proxy) sent one. */
        public Optional<String> retryAfter() {
            return Optional.ofNullable(retryAfter);
        }
    }

    /** 5xx: a bug in the service, or a proxy in front of it failing. */
    public static class ServerErrorException extends GleamApiException {
        private static final long serialVersionUID = 1L;

        public ServerErrorException(int status, String detail, String request) {
            super(status, detail, request);
        }
    }
}
