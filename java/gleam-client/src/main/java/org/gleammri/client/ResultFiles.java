package org.gleammri.client;

import java.io.IOException;
import java.io.InputStream;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.ZipEntry;
import java.util.zip.ZipInputStream;

/** The local side of downloads: file names from the service, whole-or-nothing writes, the DICOM zip. */
final class ResultFiles {
    private static final Pattern FILENAME_STAR = Pattern.compile("filename\\*\\s*=\\s*(?:UTF-8|utf-8)''([^;]+)");
    private static final Pattern FILENAME = Pattern.compile("filename\\s*=\\s*(?:\"([^\"]*)\"|([^;\\s]+))");

    private ResultFiles() {}

    /** The file name of a {@code Content-Disposition}, reduced to a plain name (no folders). */
    static Optional<String> fileName(String disposition) {
        String name = null;
        Matcher star = FILENAME_STAR.matcher(disposition);
        if (star.find()) {
            name = URLDecoder.decode(star.group(1).trim(), StandardCharsets.UTF_8);
        } else {
            Matcher plain = FILENAME.matcher(disposition);
            if (plain.find()) {
                name = plain.group(1) != null ? plain.group(1) : plain.group(2);
            }
        }
        if (name == null) {
            return Optional.empty();
        }
        name = name.substring(Math.max(name.lastIndexOf('/'), name.lastIndexOf('\\')) + 1).strip();
        if (name.isEmpty() || name.equals(".") || name.equals("..")) {
            return Optional.empty();
        }
        return Optional.of(name);
    }

    /**
     * Copies {@code in} to {@code file} through a temporary file beside it, so that {@code file}
     * appears whole or not at all. A failure to read {@code in} is a {@link GleamConnectionException}
     * ({@code what} names the request); one to write locally stays a {@link FileSystemException}.
     */
    static void write(InputStream in, Path file, String what) throws IOException {
        Path parent = file.toAbsolutePath().getParent();
        Files.createDirectories(parent);
        Path tmp = Files.createTempFile(parent, "." + file.getFileName(), ".part");
        try {
            Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
            moveInto(tmp, file);
        } catch (IOException e) {
            Files.deleteIfExists(tmp);
            if (e instanceof FileSystemException) {
                throw e;
            }
            throw new GleamConnectionException(what + ": download interrupted: " + e.getMessage(), e);
        }
    }

    private static void moveInto(Path tmp, Path file) throws IOException {
        try {
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    /** Extracts {@code zip} into {@code dir} (created; same-named files replaced); entries leaving it are refused. */
    static Path unzip(Path zip, Path dir) throws IOException {
        Path root = dir.toAbsolutePath().normalize();
        Files.createDirectories(root);
        try (ZipInputStream in = new ZipInputStream(Files.newInputStream(zip))) {
            for (ZipEntry entry; (entry = in.getNextEntry()) != null; ) {
                Path target = root.resolve(entry.getName()).normalize();
                if (!target.startsWith(root) || target.equals(root)) {
                    throw new GleamException("the DICOM zip holds an entry outside its folder: " + entry.getName());
                }
                if (entry.isDirectory()) {
                    Files.createDirectories(target);
                } else {
                    Files.createDirectories(target.getParent());
                    Files.copy(in, target, StandardCopyOption.REPLACE_EXISTING);
                }
            }
        }
        return dir;
    }
}
