package org.gleammri.engine;

import java.util.EnumSet;
import java.util.Locale;
import java.util.Set;

/** Output formats of {@link GleamEngine#reconstruct}, named as {@code gleam recon --formats} names them. */
public enum Format {
    /** {@code OUT/<stem>.h5}, dataset {@code reconstruction} float32 (S, H, W), as fastMRI's submissions. */
    H5("h5"),
    /** {@code OUT/<stem>.nii.gz}, NIfTI-1 float32, axes (x = W, y = H, z = slices), as gleam recon writes it. */
    NII("nii");

    private final String id;

    Format(String id) {
        this.id = id;
    }

    /** The name on the command line: {@code h5}, {@code nii}. */
    public String id() {
        return id;
    }

    /**
     * Parses a comma-separated list such as {@code h5,nii}. {@code dcm} and {@code png}, which
     * {@code gleam recon} also writes, are refused with the reason.
     *
     * @throws GleamInputException naming the unknown or unavailable format
     */
    public static Set<Format> parseList(String list) throws GleamInputException {
        Set<Format> formats = EnumSet.noneOf(Format.class);
        for (String part : list.split(",", -1)) {
            String name = part.trim().toLowerCase(Locale.ROOT);
            switch (name) {
                case "h5" -> formats.add(H5);
                case "nii" -> formats.add(NII);
                case "dcm" -> throw new GleamInputException(null, "--formats dcm: DICOM is not available in the "
                        + "Java engine (dcm4che is not published on Maven Central); use gleam recon --formats dcm");
                case "png" -> throw new GleamInputException(null, "--formats png: the Java engine writes no PNG "
                        + "montage; use gleam recon --formats png");
                default -> throw new GleamInputException(null, "--formats: unknown format '" + part
                        + "' (valid: h5, nii)");
            }
        }
        return formats;
    }
}
