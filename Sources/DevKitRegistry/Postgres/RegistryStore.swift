import DevKitModel

/// What every registry backend does, the same way (issue 16): the SQLite file
/// (``Registry``) and a shared PostgreSQL server (``PostgresRegistry``). Rows,
/// states and sealed secrets are identical; errors are ``RegistryError``s.
public protocol RegistryStore: AnyObject, Sendable {
    /// The ID of the registry key this handle seals with.
    var keyID: String { get }
    /// The default key file, when opening this handle created it.
    var createdKeyFile: String? { get }

    @discardableResult
    func recordNewBoard(
        uds: UDS, mac: MACAddress?, usbSerial: String?, registrationID: RegistrationID?,
        firmwareVersion: FirmwareVersion?, provisionSettings: String?, alsoMark: [ProvisioningStep]
    ) throws(RegistryError) -> BoardRecord

    @discardableResult
    func markSteps(_ steps: [ProvisioningStep], boardID: Int64, update: BoardUpdate) throws(RegistryError) -> BoardRecord

    @discardableResult
    func markFailed(boardID: Int64, error message: String) throws(RegistryError) -> BoardRecord

    func board(id: Int64) throws(RegistryError) -> BoardRecord?
    func board(byMAC mac: String) throws(RegistryError) -> BoardRecord?
    func allBoards() throws(RegistryError) -> [BoardRecord]
    func unfinishedBoards() throws(RegistryError) -> [BoardRecord]
}

extension Registry: RegistryStore {}
