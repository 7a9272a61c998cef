package org.gleammri.client;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileSystemException;
import java.time.Duration;
import java.util.Locale;

/**
 * The HTTP and JSON side of a {@link GleamClient}: builds requests (token, timeout, headers), sends
 * them, maps failures to {@link GleamException}s and error answers to {@link GleamApiException}s
 * with the service's {@code detail}, and reads JSON answers. Thread-safe.
 */
final class Transport {
    static final ObjectMapper JSON = new ObjectMapper()
            .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false)
            .configure(DeserializationFeature.READ_UNKNOWN_ENUM_VALUES_USING_DEFAULT_VALUE, true);
    private static final String USER_AGENT = "gleam-client-java/0.1";

    private final URI base;
    private final String token;
    private final Duration requestTimeout;
    private final HttpClient http;

    Transport(URI base, String token, Duration connectTimeout, Duration requestTimeout) {
        this.base = base;
        this.token = token;
        this.requestTimeout = requestTimeout;
        this.http = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(connectTimeout)
                .followRedirects(HttpClient.Redirect.NEVER)
                .build();
    }

    URI base() {
        return base;
    }

    /** A request for {@code path} (below the base URL) with the token, the timeout and our headers. */
    HttpRequest.Builder request(String path) {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path))
                .timeout(requestTimeout)
                .header("User-Agent", USER_AGENT)
                .header("Accept", "application/json");
        if (token != null) {
            b.header("Authorization", "Bearer " + token);
        }
        return b;
    }

    /** {@code GET path}, its JSON answer read as {@code type}. */
    <T> T getJson(String path, Class<T> type) throws IOException, InterruptedException {
        return parse(send(request(path).GET(), "GET " + path), type, "GET " + path);
    }

    /** Sends {@code request}; an answer other than 2xx is thrown as a {@link GleamApiException}. */
    HttpResponse<byte[]> send(HttpRequest.Builder request, String what) throws IOException, InterruptedException {
        HttpResponse<byte[]> response = send(request, HttpResponse.BodyHandlers.ofByteArray(), what);
        if (response.statusCode() / 100 != 2) {
            throw error(response.statusCode(), response.body(), what, response);
        }
        return response;
    }

    /** Sends {@code request} whatever its status; failures to connect or to answer in time are thrown. */
    <T> HttpResponse<T> send(HttpRequest.Builder request, HttpResponse.BodyHandler<T> handler, String what)
            throws IOException, InterruptedException {
        try {
            return http.send(request.build(), handler);
        } catch (HttpConnectTimeoutException e) {
            throw new GleamTimeoutException(what + ": could not connect to " + base + " within the connect timeout", e);
        } catch (HttpTimeoutException e) {
            throw new GleamTimeoutException(what + ": no answer from " + base + " within " + seconds(requestTimeout), e);
        } catch (ConnectException e) {
            String why = e.getMessage() == null || e.getMessage().isBlank() ? "connection refused" : e.getMessage();
            throw new GleamConnectionException("cannot reach the service at " + base + " (" + why + ")", e);
        } catch (FileSystemException e) {
            throw e; // a local file (the upload) could not be read
        } catch (IOException e) {
            throw new GleamConnectionException(what + ": connection to " + base + " failed: " + e.getMessage(), e);
        }
    }

    /** The JSON body of {@code response} as {@code type}. */
    static <T> T parse(HttpResponse<byte[]> response, Class<T> type, String what) throws GleamException {
        try {
            return JSON.readValue(response.body(), type);
        } catch (IOException e) {
            throw new GleamException(what + ": the answer is not what the API describes: " + e.getMessage(), e);
        }
    }

    /** The exception for an error answer. */
    static GleamApiException error(int status, byte[] body, String what, HttpResponse<?> response) {
        return GleamApiException.of(status, detail(status, body), what, response.headers().firstValue("Retry-After"));
    }

    /** The {@code detail} of an error body; the body itself (shortened) when it is not the service's JSON. */
    static String detail(int status, byte[] body) {
        try {
            JsonNode detail = JSON.readTree(body).get("detail");
            if (detail != null && !detail.isNull()) {
                return detail.isTextual() ? detail.asText() : detail.toString();
            }
        } catch (JsonProcessingException | RuntimeException e) {
            // not JSON: a proxy's page, say
        } catch (IOException e) {
            // not reachable for a byte array
        }
        String text = new String(body, StandardCharsets.UTF_8).strip().replaceAll("\\s+", " ");
        if (text.isEmpty()) {
            return "HTTP " + status + " without a message";
        }
        return text.length() > 300 ? text.substring(0, 300) + "..." : text;
    }

    /** {@code d} for messages: {@code 120 s}, {@code 0.500 s}. */
    static String seconds(Duration d) {
        return String.format(Locale.ROOT, "%.3g s", d.toMillis() / 1000.0);
    }
}
