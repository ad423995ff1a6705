import DevKitWorkflows

/// The firmware measurer backed by the DiceRIoT generator, for `provision`,
/// `autoconfigure` and `watch`.
///
/// Wiring point: the generator lands on branch `dice`; until it is merged this
/// reports that it is missing instead of producing a wrong certificate.
func diceRIoTMeasurer() -> FirmwareMeasurer {
    { _ in
        throw ProvisionError.firmware(
            "this devkit was built without the DICE/RIoT certificate generator; nothing was sent to the board")
    }
}
