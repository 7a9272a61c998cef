package org.gleammri.client;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.net.http.HttpRequest;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.List;

/** A {@code multipart/form-data} body (RFC 7578): text fields and files, the files streamed from disk. */
final class Multipart {
    private static final SecureRandom RANDOM = new SecureRandom();

    private final String boundary;
    private final List<HttpRequest.BodyPublisher> parts = new ArrayList<>();

    Multipart() {
        StringBuilder sb = new StringBuilder("gleam-");
        for (int i = 0; i < 24; i++) {
            sb.append(Character.forDigit(RANDOM.nextInt(36), 36));
        }
        boundary = sb.toString();
    }

    /** The {@code Content-Type} header's value. */
    String contentType() {
        return "multipart/form-data; boundary=" + boundary;
    }

    String boundary() {
        return boundary;
    }

    Multipart field(String name, String value) {
        text("--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + quote(name) + "\"\r\n"
                + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + value + "\r\n");
        return this;
    }

    Multipart file(String name, Path path) throws IOException {
        if (!Files.isRegularFile(path)) {
            throw new FileNotFoundException("no such file: " + path);
        }
        text("--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + quote(name)
                + "\"; filename=\"" + quote(path.getFileName().toString()) + "\"\r\n"
                + "Content-Type: application/octet-stream\r\n\r\n");
        parts.add(HttpRequest.BodyPublishers.ofFile(path));
        text("\r\n");
        return this;
    }

    HttpRequest.BodyPublisher build() {
        List<HttpRequest.BodyPublisher> all = new ArrayList<>(parts);
        all.add(HttpRequest.BodyPublishers.ofString("--" + boundary + "--\r\n", StandardCharsets.UTF_8));
        return HttpRequest.BodyPublishers.concat(all.toArray(HttpRequest.BodyPublisher[]::new));
    }

    private void text(String s) {
        parts.add(HttpRequest.BodyPublishers.ofByteArray(s.getBytes(StandardCharsets.UTF_8)));
    }

    /** A quoted-string's content: quote and line breaks percent-encoded (as browsers do, WHATWG). */
    private static String quote(String s) {
        return s.replace("\"", "%22").replace("\r", "%0D").replace("\n", "%0A");
    }
}
