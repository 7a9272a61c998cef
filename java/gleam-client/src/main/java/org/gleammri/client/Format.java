package org.gleammri.client;

import java.util.Locale;

/** An output format of a reconstruction, as the service names it in {@code formats}. */
public enum Format {
    /** HDF5 with dataset {@code reconstruction}, float32, exactly what {@code gleam recon} writes. */
    H5("h5", ".h5"),
    /** Gzipped NIfTI. */
    NII("nii", ".nii.gz"),
    /** The montage {@code gleam recon} writes. */
    PNG("png", ".png"),
    /** A zip of the DICOM series (one file per slice / frame). */
    DCM("dcm", "_dicom.zip");

    private final String wireName;
    private final String suffix;

    Format(String wireName, String suffix) {
        this.wireName = wireName;
        this.suffix = suffix;
    }

    /** The name used in requests and in {@code ?format=}: {@code h5}, {@code nii}, {@code png}, {@code dcm}. */
    public String wireName() {
        return wireName;
    }

    /** What the service appends to the upload's stem in the download's file name. */
    public String suffix() {
        return suffix;
    }

    /** The format named {@code name} (case-insensitive); {@link IllegalArgumentException} for others. */
    public static Format parse(String name) {
        String wanted = name.trim().toLowerCase(Locale.ROOT);
        for (Format format : values()) {
            if (format.wireName.equals(wanted)) {
                return format;
            }
        }
        throw new IllegalArgumentException(
                "unknown output format '" + name.trim() + "'; valid: h5, nii, png, dcm");
    }

    @Override
    public String toString() {
        return wireName;
    }
}
