from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("chatmodel_app", "0005_variables_labels")]

    operations: list = []
