from oauth2_provider.oauth2_validators import OAuth2Validator


class EmailClaims(OAuth2Validator):
    """Claims an enterprise provider sends: email (scope email), name and preferred_username
    (scope profile; the tests make the username an employee id to match by employee_id)."""

    def get_additional_claims(self, request):
        return {
            "email": request.user.email,
            "name": request.user.get_full_name() or request.user.username,
            "preferred_username": request.user.username,
        }
